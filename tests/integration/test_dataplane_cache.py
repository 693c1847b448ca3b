"""The response cache and coalescing (issue 12), as a client sees them: a real pathway in front of
pathway-mock-upstream, whose chain head advances (--block-time), whose blocks above the head are null
and whose receipts appear once their block is mined, like a node's. Loopback only, bounded in count
and time. The mocks count calls by method (their control listener), so "the upstream saw N requests"
is read from the upstream's side."""

import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402
from dp_util import Pathway, admin_post, parallel, promtool_check, vm_rss_kib, wait_for  # noqa: E402
from pwtest import main, test  # noqa: E402

HEAD0 = 0x1000000  # the mock's head at start


class Mock:
    """pathway-mock-upstream with a control listener."""

    def __init__(self, *args):
        self.port = pwtest.free_port()
        self.ctl = pwtest.free_port()
        self.proc = pwtest.Proc([pwtest.binary("pathway-mock-upstream"), "--port", str(self.port), "--control-port",
                                 str(self.ctl), *args], name="mock")
        pwtest.wait_port(self.ctl)
        pwtest.wait_port(self.port)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def set(self, **settings):
        status, _, body = pwtest.request_json(self.ctl, "POST", "/control", settings)
        assert status == 200, (settings, status, body)

    def calls(self, method):
        status, _, body = pwtest.request_json(self.ctl, "GET", "/control")
        assert status == 200
        return body["by_method"].get(method, 0)

    def head(self):
        status, _, body = pwtest.request_json(self.ctl, "GET", "/control")
        return body["head"]


CACHE = """cache:
  enabled: true
  ttl: {final: 0s, unfinal: 1s, realtime: 300ms}
health_check:
  interval: 100ms
"""


def start(mock, over=CACHE, extra="cache:\n  max_bytes: 8MiB\n", threads=2, env=None):
    pw = Pathway([("eth", [mock.url], over)], extra=extra, threads=threads, env=env)
    return pw


def call(pw, method, params, rid=1, service="eth", raw=False):
    """One request; returns (status, X-Pathway-Cache, body bytes)."""
    body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode()
    status, hdrs, data = pwtest.request(pw.port, "POST", f"/v1/{service}", body, {"Content-Type": "application/json"})
    return status, hdrs.get("x-pathway-cache"), data


def wait_head_known(pw):
    wait_for(lambda: (pw.stats()["services"][0]["health"]["head"] or 0) >= HEAD0, 5, "the service's head from the probes")


@test
def final_block_is_served_from_the_cache_byte_for_byte():
    m = Mock()
    pw = start(m)
    wait_head_known(pw)
    s1, c1, b1 = call(pw, "eth_getBlockByNumber", ["0x10", False], rid=7)
    s2, c2, b2 = call(pw, "eth_getBlockByNumber", ["0x10", False], rid="abc")
    assert (s1, c1, s2, c2) == (200, "miss", 200, "hit"), (s1, c1, s2, c2)
    assert m.calls("eth_getBlockByNumber") == 1
    # the client's own id, everything else byte for byte as the upstream sent it
    assert b2 == b1.replace(b'"id":7', b'"id":"abc"'), (b1, b2)
    assert json.loads(b2)["result"]["number"] == "0x10"
    # the same params written otherwise (blanks) key the same; another block does not
    body = b'{"jsonrpc":"2.0","id":9,"method":"eth_getBlockByNumber","params":[ "0x10" , false ]}'
    st, h, data = pwtest.request(pw.port, "POST", "/v1/eth", body, {"Content-Type": "application/json"})
    assert (st, h.get("x-pathway-cache"), json.loads(data)["id"]) == (200, "hit", 9)
    assert call(pw, "eth_getBlockByNumber", ["0x11", False])[1] == "miss"
    # final: still there after the unfinal ttl
    time.sleep(1.2)
    assert call(pw, "eth_getBlockByNumber", ["0x10", False])[1] == "hit"
    assert m.calls("eth_getBlockByNumber") == 2


@test
def unfinal_block_is_fetched_again_after_its_ttl():
    m = Mock()
    pw = start(m)
    wait_head_known(pw)
    near = hex(HEAD0 - 3)  # above head - finality_depth (64): not final
    assert call(pw, "eth_getBlockByNumber", [near, False])[1] == "miss"
    assert call(pw, "eth_getBlockByNumber", [near, False])[1] == "hit"
    time.sleep(1.3)  # ttl.unfinal 1s
    assert call(pw, "eth_getBlockByNumber", [near, False])[1] == "miss"
    assert m.calls("eth_getBlockByNumber") == 2


@test
def without_a_known_head_nothing_is_final():
    m = Mock()
    pw = start(m, over="cache:\n  enabled: true\n  ttl: {final: 0s, unfinal: 1s}\n")
    assert pw.stats()["services"][0]["health"]["head"] in (None, 0)
    assert call(pw, "eth_getBlockByNumber", ["0x10", False])[1] == "miss"
    assert call(pw, "eth_getBlockByNumber", ["0x10", False])[1] == "hit"
    time.sleep(1.3)
    assert call(pw, "eth_getBlockByNumber", ["0x10", False])[1] == "miss"


@test
def latest_is_never_older_than_the_realtime_ttl():
    m = Mock("--block-time", "50")
    pw = start(m)
    first_seen, last_seen, hits = {}, {}, 0
    deadline = time.time() + 2.5
    while time.time() < deadline:
        for method, params in (("eth_blockNumber", []), ("eth_getBlockByNumber", ["latest", False])):
            t = time.time()
            st, c, data = call(pw, method, params)
            assert st == 200
            hits += c == "hit"
            r = json.loads(data)["result"]
            v = (method, r if method == "eth_blockNumber" else r["number"])
            first_seen.setdefault(v, t)
            last_seen[v] = time.time()
    assert hits > 10, hits
    # a value first seen at t is never served after t + ttl.realtime (300 ms), with 100 ms of slack
    worst = max(last_seen[v] - first_seen[v] for v in first_seen)
    assert worst < 0.4, worst


@test
def a_null_receipt_is_asked_again_and_cached_once_mined():
    m = Mock("--block-time", "100")
    pw = start(m)
    head = m.head()
    tx = "0x" + "ab" * 24 + "%016x" % (head + 5)  # mined in block head + 5
    for _ in range(2):
        st, c, data = call(pw, "eth_getTransactionReceipt", [tx])
        assert st == 200 and json.loads(data)["result"] is None and c == "miss", (st, c, data)
    assert m.calls("eth_getTransactionReceipt") == 2
    wait_for(lambda: m.head() >= head + 5, 5, "the block to be mined")
    st, c, data = call(pw, "eth_getTransactionReceipt", [tx])
    assert json.loads(data)["result"]["blockNumber"] == hex(head + 5) and c == "miss"
    st, c, data = call(pw, "eth_getTransactionReceipt", [tx], rid=2)
    assert c == "hit" and json.loads(data)["id"] == 2
    assert m.calls("eth_getTransactionReceipt") == 3


@test
def errors_are_never_cached():
    m = Mock("--error-rate", "1", "--error-code", "3")  # code 3: execution reverted, the request's own fault
    pw = start(m)
    for i in range(3):
        st, c, data = call(pw, "eth_call", [{"to": "0x" + "11" * 20, "data": "0x"}, "0x10"], rid=i)
        assert st == 200 and "error" in json.loads(data) and c == "miss", (st, c, data)
    assert m.calls("eth_call") == 3


@test
def methods_that_must_not_be_cached_are_bypassed():
    m = Mock()
    pw = start(m)
    for _ in range(2):
        assert call(pw, "eth_sendRawTransaction", ["0x00"])[1] == "bypass"
        assert call(pw, "eth_newFilter", [{}])[1] == "bypass"
    assert m.calls("eth_sendRawTransaction") == 2
    # a notification (no id) is relayed, never answered from the cache
    body = b'{"jsonrpc":"2.0","method":"eth_chainId","params":[]}'
    for _ in range(2):
        pwtest.request(pw.port, "POST", "/v1/eth", body, {"Content-Type": "application/json"})
    assert m.calls("eth_chainId") == 2


@test
def per_method_overrides_apply_at_runtime():
    m = Mock()
    pw = start(m)
    assert call(pw, "eth_chainId", [])[1] == "miss"
    assert call(pw, "eth_chainId", [])[1] == "hit"
    pw.services = [("eth", [m.url], "cache:\n  enabled: true\n  methods: {eth_chainId: off, web3_clientVersion: {class: static}}\n")]
    pw.write()
    st, _, body = pw.reload()
    assert st == 200 and body["ok"], body
    assert call(pw, "eth_chainId", [])[1] == "bypass"
    assert call(pw, "web3_clientVersion", [])[1] == "miss"
    assert call(pw, "web3_clientVersion", [])[1] == "hit"
    # cache off at runtime: nothing served from it any more
    pw.services = [("eth", [m.url], "")]
    pw.write()
    assert pw.reload()[0] == 200
    st, c, _ = call(pw, "web3_clientVersion", [])
    assert st == 200 and c is None
    assert m.calls("web3_clientVersion") == 2


@test
def a_thousand_identical_requests_reach_the_upstream_once():
    m = Mock("--latency", "1500")
    # followers take no limiter permit: one permit for the service is enough for all of them
    pw = start(m, over=CACHE + "limiter:\n  max_concurrent: 1\n", extra="cache:\n  max_bytes: 8MiB\nlimiter:\n  max_queue: 10\n")
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": ["0x10", False]}).encode()

    def one(i):
        b = body.replace(b'"id": 1', b'"id": %d' % i)
        st, h, data = pwtest.request(pw.port, "POST", "/v1/eth", b, {"Content-Type": "application/json"}, timeout=30)
        return st, h.get("x-pathway-cache"), json.loads(data)["id"]

    results = parallel(1000, one)
    bad = [r for r in results if not isinstance(r, tuple) or r[0] != 200]
    assert not bad, bad[:5]
    assert all(r[2] == i for i, r in enumerate(results)), "every client gets its own id"
    kinds = {k: sum(1 for r in results if r[1] == k) for k in ("miss", "coalesced", "hit")}
    assert m.calls("eth_getBlockByNumber") == 1, m.calls("eth_getBlockByNumber")
    assert kinds["miss"] == 1 and kinds["coalesced"] > 500, kinds
    metrics = pw.metrics()
    n = int(re.search(r'pathway_cache_requests_total\{service="eth",result="coalesced"\} (\d+)', metrics).group(1))
    assert n == kinds["coalesced"], (n, kinds)


@test
def a_failed_leader_is_retried_by_one_follower_not_by_all():
    # every answer is a server error (retriable class); no retries, so each relay makes one try
    m = Mock("--latency", "500", "--error-rate", "1", "--error-code", "-32603")  # internal error: server_error
    pw = start(m, over=CACHE + "retry:\n  max_attempts: 1\n")
    results = parallel(20, lambda i: call(pw, "eth_getBlockByNumber", ["0x10", False], rid=i))
    assert all(isinstance(r, tuple) for r in results), results
    # the leader, then one follower: two requests upstream, not twenty
    assert m.calls("eth_getBlockByNumber") == 2, m.calls("eth_getBlockByNumber")
    failed = [r for r in results if r[0] == 502]
    assert len(failed) >= 15, [r[:2] for r in results]
    for st, c, data in failed:
        assert "coalesced" in json.loads(data)["error"]["message"]


def batch(pw, items):
    body = json.dumps([{"jsonrpc": "2.0", "id": rid, "method": m, "params": p} for rid, m, p in items]).encode()
    st, h, data = pwtest.request(pw.port, "POST", "/v1/eth", body, {"Content-Type": "application/json"})
    return st, h.get("x-pathway-cache"), json.loads(data)


@test
def batches_with_mixed_hits_come_back_in_order_with_the_right_ids():
    m = Mock()
    pw = start(m)
    wait_head_known(pw)
    # a batch of misses: relayed as it is, its items stored
    st, c, ans = batch(pw, [(1, "eth_getBlockByNumber", ["0x10", False]), (2, "eth_chainId", [])])
    assert st == 200 and c == "miss" and [a["id"] for a in ans] == [1, 2], (st, c, ans)
    assert m.calls("eth_getBlockByNumber") == 1 and m.calls("eth_chainId") == 1
    # every item cached: answered from the cache, the client's ids
    st, c, ans = batch(pw, [("b", "eth_chainId", []), ("a", "eth_getBlockByNumber", ["0x10", False])])
    assert (st, c) == (200, "hit") and [a["id"] for a in ans] == ["b", "a"], (st, c, ans)
    assert ans[0]["result"] == "0x1" and ans[1]["result"]["number"] == "0x10"
    assert m.calls("eth_getBlockByNumber") == 1 and m.calls("eth_chainId") == 1
    # some cached: only the others go upstream (a smaller batch), the answer in the client's order
    before = m.calls("eth_chainId")
    st, c, ans = batch(pw, [(10, "eth_getBlockByNumber", ["0x11", False]), (11, "eth_chainId", []),
                            (12, "eth_sendRawTransaction", ["0x00"]), (13, "eth_getBlockByNumber", ["0x10", False])])
    assert (st, c) == (200, "partial"), (st, c, ans)
    assert [a["id"] for a in ans] == [10, 11, 12, 13], ans
    assert ans[0]["result"]["number"] == "0x11" and ans[1]["result"] == "0x1" and ans[3]["result"]["number"] == "0x10"
    assert m.calls("eth_chainId") == before and m.calls("eth_getBlockByNumber") == 2 and m.calls("eth_sendRawTransaction") == 1
    # the item that went upstream is cached now
    st, c, ans = batch(pw, [(20, "eth_getBlockByNumber", ["0x11", False])])
    assert c == "hit" and ans[0]["id"] == 20
    # two items with one id cannot be told apart: relayed untouched
    st, c, ans = batch(pw, [(5, "eth_chainId", []), (5, "eth_chainId", [])])
    assert st == 200 and c == "bypass" and len(ans) == 2, (c, ans)


@test
def a_partial_batch_with_a_chunked_answer():
    # chunked answers are not held whole by failover: the relay collects them before reassembling
    m = Mock("--chunked")
    pw = start(m, over=CACHE + "retry:\n  max_attempts: 1\n")
    assert batch(pw, [(1, "eth_chainId", [])])[1] == "miss"
    for k in range(3):
        items = [(100 + j, "eth_getBlockByNumber", [hex(0x100 + 10 * k + j), False]) for j in range(5)]
        st, c, ans = batch(pw, items[:2] + [(7, "eth_chainId", [])] + items[2:])
        assert (st, c) == (200, "partial"), (st, c)
        assert [a["id"] for a in ans] == [100, 101, 7, 102, 103, 104], ans
        assert [a["result"]["number"] for a in ans if a["id"] != 7] == [hex(0x100 + 10 * k + j) for j in range(5)]
    assert m.calls("eth_chainId") == 1


@test
def coalescing_without_caching():
    m = Mock("--latency", "500")
    pw = start(m, over="cache:\n  coalesce: true\n")
    results = parallel(50, lambda i: call(pw, "eth_blockNumber", [], rid=i))
    assert all(isinstance(r, tuple) and r[0] == 200 for r in results), results[:3]
    assert [json.loads(r[2])["id"] for r in results] == list(range(50))
    assert m.calls("eth_blockNumber") == 1, m.calls("eth_blockNumber")
    assert sorted(r[1] for r in results).count("coalesced") >= 40
    # nothing is stored: the next one goes upstream
    assert call(pw, "eth_blockNumber", [])[1] == "miss"
    assert m.calls("eth_blockNumber") == 2


def asan_build():
    """Whether the binaries under test were built with AddressSanitizer (make SANITIZE=address,...)."""
    try:
        with open(os.path.join(pwtest.BUILD_DIR, "CMakeCache.txt")) as f:
            return any(line.startswith("SANITIZE:") and "address" in line for line in f)
    except OSError:
        return False


@test
def the_memory_bound_holds():
    m = Mock("--response-size", "100000")  # each answer about 100 KB
    over = "cache:\n  enabled: true\n"
    # Under AddressSanitizer freed memory waits in a quarantine (256 MiB by default) before reuse,
    # which RSS would show as growth; a small one keeps every check on and the figure honest.
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=1"}
    pw = start(m, over=over, extra="cache:\n  max_bytes: 8MiB\n  max_entry: 1MiB\n", env=env)
    pid = pw.proc.p.pid
    # warm the relay's own buffers on the same answers first (uncached: a method the cache never keeps)
    for i in range(40):
        assert call(pw, "eth_sendRawTransaction", ["0x%02x" % i])[0] == 200
    base = vm_rss_kib(pid)
    for i in range(1, 801):  # 10 x max_bytes of distinct answers
        st, c, _ = call(pw, "eth_getBlockByNumber", [hex(i), False])
        assert st == 200 and c == "miss", (i, st, c)
    stats = pw.stats()["cache"]
    assert stats["bytes"] <= 8 * 1024 * 1024 and stats["evictions"] > 600, stats
    grown = vm_rss_kib(pid) - base
    print(f"RSS grew {grown} KiB (base {base} KiB), cache {stats}")
    bound = 8 * 1024 * 1.1
    if asan_build():
        # AddressSanitizer shadows every byte the process maps with 1/8 of a byte, and keeps its
        # (small) quarantine: the cache's own growth is the same, the process's is larger
        bound = 8 * 1024 * (1.1 + 0.125) + 1024
    assert grown <= bound, f"RSS grew {grown} KiB for an 8 MiB cache (bound {bound:.0f} KiB)"


@test
def purge_stats_and_metrics():
    m = Mock()
    pw = Pathway([("eth", [m.url], CACHE), ("eth2", [m.url], CACHE)], extra="cache:\n  max_bytes: 8MiB\n")
    for svc in ("eth", "eth2"):
        assert call(pw, "eth_chainId", [], service=svc)[1] == "miss"
    s = pw.stats()
    assert s["cache"]["entries"] == 2 and s["cache"]["max_bytes"] == 8 * 1024 * 1024, s["cache"]
    svc = s["services"][0]["cache"]
    assert svc["enabled"] and svc["coalesce"] and svc["ttl"]["unfinal"] == "1s" and svc["requests"]["miss"] == 1, svc
    # one service's answers only ("eth" is a prefix of "eth2": the other stays)
    st, _, body = admin_post(pw.admin, "/cache/purge?service=eth")
    assert st == 200 and body["purged"] == 1, body
    assert call(pw, "eth_chainId", [], service="eth")[1] == "miss"
    assert call(pw, "eth_chainId", [], service="eth2")[1] == "hit"
    st, _, body = admin_post(pw.admin, "/cache/purge")
    assert st == 200 and body["purged"] == 2, body
    st, _, body = admin_post(pw.admin, "/cache/purge?service=no/such")
    assert st == 400 and "service" in body["error"], body
    st, _, _ = pwtest.request(pw.admin, "GET", "/cache/purge")
    assert st == 405
    text = pw.metrics()
    promtool_check(text)
    for series in ('pathway_cache_requests_total{service="eth",result="hit"}', "pathway_cache_bytes ", "pathway_cache_entries ",
                   "pathway_cache_evictions_total ", 'pathway_cache_ttl_seconds{service="eth",finality="unfinal"} 1.000'):
        assert series in text, series


if __name__ == "__main__":
    main()
