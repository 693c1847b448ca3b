"""Failover (issue 10): retries on another endpoint, what is never repeated, the budget that bounds
retries and hedges, hedging, and runtime changes of the knobs. Loopback only, bounded in count and
time: mock upstreams (refusing, 503, -32005, resetting, slow) behind a real pathway."""

import http.client
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cp_util  # noqa: E402
import pwtest  # noqa: E402
from dp_util import Pathway, mock_stats, start_mock, wait_for  # noqa: E402
from pwtest import main, test  # noqa: E402

CALL = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
SEND_RAW = {"jsonrpc": "2.0", "id": 9, "method": "eth_sendRawTransaction", "params": ["0xf86c0a8502540be400"]}


class Client:
    """One keep-alive HTTP/1.1 connection to the relay: post() -> (status, {header: value}, body)."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(self, body, service="eth"):
        data = json.dumps(body).encode()
        try:
            self.conn.request("POST", f"/v1/{service}", data, {"Content-Type": "application/json"})
            r = self.conn.getresponse()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.conn.request("POST", f"/v1/{service}", data, {"Content-Type": "application/json"})
            r = self.conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()

    def close(self):
        self.conn.close()


def metric(text, name, **labels):
    """The sum of the series of a /metrics text whose labels include these (0 when none)."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def stop_all(pw, mocks):
    if pw is not None:
        assert pw.proc.stop() == 0, pw.proc.output()[-3000:]
    for m in mocks:
        m.stop()


def p99_ms(samples):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * 0.99))]


@test
def test_refused_503_and_good_endpoints_answer_every_request():
    # one endpoint refuses connections, one answers 503, one is good: every request is answered 200
    dead = pwtest.free_port()
    bad, bad_port = start_mock("--status", "503")
    good, good_port = start_mock()
    pw = None
    try:
        pw = Pathway([("eth", [f"http://127.0.0.1:{dead}", f"http://127.0.0.1:{bad_port}", f"http://127.0.0.1:{good_port}"],
                       "retry: {max_attempts: 3, backoff: {base: 0s}, budget: {percent: 100, min_concurrent: 1000}}")])
        c = Client(pw.port)
        statuses, retried = {}, 0
        for i in range(1000):
            st, h, body = c.post(dict(CALL, id=i))
            statuses[st] = statuses.get(st, 0) + 1
            assert st != 200 or json.loads(body)["id"] == i
            retried += "x-pathway-attempts" in h
        c.close()
        assert statuses == {200: 1000}, statuses
        assert retried > 0  # the failing endpoints were tried and passed over
        assert mock_stats(bad_port)["requests"] > 0
        m = pw.metrics()
        assert metric(m, "pathway_retries_total", service="eth", reason="connect_failure") > 0
        assert metric(m, "pathway_retries_total", service="eth", reason="http_5xx") > 0
        assert metric(m, "pathway_attempts_total", service="eth", result="server_error") == mock_stats(bad_port)["requests"]
        assert metric(m, "pathway_attempts_total", service="eth", result="connect_failure") > 0
        assert metric(m, "pathway_attempts_total", service="eth", endpoint=f"127.0.0.1:{good_port}", result="ok") == 1000
        svc = pw.stats()["services"][0]
        assert svc["retries"]["http_5xx"] == metric(m, "pathway_retries_total", service="eth", reason="http_5xx")
        eps = {e["name"]: e for e in svc["endpoints"]}
        assert eps[f"127.0.0.1:{good_port}"]["attempts"]["ok"] == 1000
    finally:
        stop_all(pw, [bad, good])


@test
def test_rate_limited_in_a_200_lands_on_the_others():
    # one endpoint answers every call with -32005 inside a 200: those requests are retried elsewhere
    limited, lport = start_mock("--error-rate", "1", "--error-code", "-32005")
    g1, p1 = start_mock()
    g2, p2 = start_mock()
    pw = None
    try:
        pw = Pathway([("eth", [f"http://127.0.0.1:{lport}", f"http://127.0.0.1:{p1}", f"http://127.0.0.1:{p2}"],
                       "retry: {backoff: {base: 0s}, budget: {percent: 100}}"),
                      ("lim", [f"http://127.0.0.1:{lport}"], "")])
        c = Client(pw.port)
        for i in range(150):
            st, h, body = c.post(dict(CALL, id=i))
            doc = json.loads(body)
            assert st == 200 and "result" in doc and doc["id"] == i, (st, doc)
        hit = mock_stats(lport)["requests"]
        assert hit > 0, "the limited endpoint was never tried"
        assert mock_stats(p1)["requests"] + mock_stats(p2)["requests"] == 150
        m = pw.metrics()
        assert metric(m, "pathway_retries_total", service="eth", reason="rpc_rate_limited") == hit
        assert metric(m, "pathway_attempts_total", service="eth", endpoint=f"127.0.0.1:{lport}", result="rate_limited") == hit
        # an item's error never makes a batch fail: the batch answer is relayed as is, once
        batch = [dict(CALL, id=1), dict(CALL, id=2)]
        before = mock_stats(lport)["requests"]
        st, h, body = c.post(batch, service="lim")
        assert st == 200 and [d["error"]["code"] for d in json.loads(body)] == [-32005, -32005], body
        assert "x-pathway-attempts" not in h
        assert mock_stats(lport)["requests"] == before + 1
        # with only that endpoint, the retry also gets -32005: the endpoint's own answer is relayed
        st, h, body = c.post(dict(CALL, id=77), service="lim")
        assert st == 200 and json.loads(body) == {"jsonrpc": "2.0", "id": 77, "error": {"code": -32005, "message": "mock error"}}
        assert h.get("x-pathway-attempts") == "2", h
        c.close()
    finally:
        stop_all(pw, [limited, g1, g2])


@test
def test_unsafe_method_reset_after_read_is_sent_once():
    # eth_sendRawTransaction: the upstream reads it and resets. It may have arrived, so it is never
    # sent again: not by a retry, not by the stale keep-alive resend of a reused connection.
    mocks = [start_mock("--fault", "reset", "--fault-method", "eth_sendRawTransaction") for _ in range(2)]
    pw = None
    try:
        pw = Pathway([("eth", [f"http://127.0.0.1:{p}" for _, p in mocks], "retry: {backoff: {base: 0s}}")], threads=1)
        c = Client(pw.port)
        for i in range(4):  # warm connections: the unsafe request goes out on a reused one
            assert c.post(dict(CALL, id=i))[0] == 200
        assert sum(e["idle"] for e in pw.stats()["services"][0]["endpoints"]) >= 1
        st, h, body = c.post(SEND_RAW)
        doc = json.loads(body)
        assert st == 502, (st, doc)
        assert doc["id"] == 9 and doc["error"]["code"] == -32002, doc
        assert "not retried" in doc["error"]["message"] and "unsafe_methods" in doc["error"]["message"], doc
        seen = sum(mock_stats(p)["requests"] for _, p in mocks) - 4
        assert seen == 1, f"the upstreams saw eth_sendRawTransaction {seen} times"
        assert sum(mock_stats(p)["faults"] for _, p in mocks) == 1
        c.close()
    finally:
        stop_all(pw, [m for m, _ in mocks])


@test
def test_unsafe_method_is_retried_when_it_never_left():
    # a refused connection means the request surely never arrived: even an unsafe method is retried
    dead = pwtest.free_port()
    good, gp = start_mock()
    pw = None
    try:
        pw = Pathway([("eth", [f"http://127.0.0.1:{dead}", f"http://127.0.0.1:{gp}"],
                       "retry: {backoff: {base: 0s}, budget: {min_concurrent: 100}}")])
        c = Client(pw.port)
        for i in range(20):
            st, _, body = c.post(dict(SEND_RAW, id=i))
            assert st == 200 and json.loads(body)["id"] == i, body
        assert mock_stats(gp)["requests"] == 20
        c.close()
    finally:
        stop_all(pw, [good])


@test
def test_all_failing_stays_within_the_budget():
    # every endpoint answers 503: retries are wanted by every request, the budget bounds them
    mocks = [start_mock("--status", "503") for _ in range(2)]
    pw = None
    n, percent, min_concurrent = 300, 20, 3
    try:
        pw = Pathway([("eth", [f"http://127.0.0.1:{p}" for _, p in mocks],
                       f"retry: {{max_attempts: 3, backoff: {{base: 0s}}, budget: {{percent: {percent}, "
                       f"min_concurrent: {min_concurrent}}}}}")])
        c = Client(pw.port)
        for i in range(n):
            st, _, body = c.post(dict(CALL, id=i))
            assert st == 503 and json.loads(body)["id"] == i  # the endpoint's own answer
        c.close()
        upstream = sum(mock_stats(p)["requests"] for _, p in mocks)
        bound = n * (1 + percent / 100) + min_concurrent
        print(f"{n} requests, {upstream} upstream attempts, bound {bound:.0f}")
        assert n < upstream <= bound, (upstream, bound)
        m = pw.metrics()
        assert metric(m, "pathway_retry_budget_exhausted_total", service="eth") > 0
        assert metric(m, "pathway_retries_total", service="eth", reason="http_5xx") == upstream - n
    finally:
        stop_all(pw, [m for m, _ in mocks])


@test
def test_per_try_timeout_moves_on_after_the_default_backoff():
    # one endpoint answers after 2 s: per_try_timeout gives it up after 100 ms and the retry (after
    # the default full-jitter backoff, at most 25 ms) goes to the other
    slow, sp = start_mock("--latency", "2000")
    good, gp = start_mock()
    pw = None
    try:
        pw = Pathway([("eth", [f"http://127.0.0.1:{sp}", f"http://127.0.0.1:{gp}"],
                       "retry: {per_try_timeout: 100ms, budget: {min_concurrent: 50}}")])
        c = Client(pw.port)
        worst = 0
        for i in range(10):
            t0 = time.monotonic()
            st, h, body = c.post(dict(CALL, id=i))
            worst = max(worst, time.monotonic() - t0)
            assert st == 200 and json.loads(body)["id"] == i, (st, body)
        c.close()
        assert worst < 1.0, worst  # never the slow endpoint's 2 s
        m = pw.metrics()
        timeouts = metric(m, "pathway_retries_total", service="eth", reason="timeout")
        assert timeouts > 0 and timeouts == metric(m, "pathway_attempts_total", endpoint=f"127.0.0.1:{sp}", result="timeout")
    finally:
        stop_all(pw, [slow, good])


def timed_requests(port, n):
    c = Client(port)
    ms, hedged = [], {}
    for i in range(n):
        t0 = time.monotonic()
        st, h, body = c.post(dict(CALL, id=i))
        ms.append((time.monotonic() - t0) * 1000)
        assert st == 200 and json.loads(body)["id"] == i, (st, body)
        if "x-pathway-hedged" in h:
            hedged[h["x-pathway-hedged"]] = hedged.get(h["x-pathway-hedged"], 0) + 1
    c.close()
    return ms, hedged


@test
def test_hedging_cuts_the_slow_endpoints_tail():
    slow, sp = start_mock("--latency", "300")
    fast = [start_mock("--latency", "5") for _ in range(2)]
    urls = [f"http://127.0.0.1:{sp}"] + [f"http://127.0.0.1:{p}" for _, p in fast]
    pw = None
    try:
        pw = Pathway([("eth", urls, "hedge: {delay: 0s}")], threads=1)
        plain, _ = timed_requests(pw.port, 30)
        pw.write(pw.text(services=[("eth", urls, "hedge: {delay: 20ms, max_extra: 1}\nretry: {budget: {percent: 100}}")]))
        st, _, body = pw.reload()
        assert st == 200 and body["changed"], body
        ms, hedged = timed_requests(pw.port, 200)
        p99_plain, p99_hedged = p99_ms(plain), p99_ms(ms)
        print(f"p99 without hedging {p99_plain:.1f} ms (30 requests), with hedge.delay 20ms {p99_hedged:.1f} ms "
              f"(200 requests), hedges {hedged}")
        assert p99_plain >= 250, p99_plain
        assert p99_hedged < 50, (p99_hedged, sorted(ms)[-5:])
        assert hedged.get("won", 0) > 0
        m = pw.metrics()
        assert metric(m, "pathway_hedges_total", service="eth", outcome="won") == hedged.get("won", 0)
        assert metric(m, "pathway_hedges_total", service="eth", outcome="lost") == hedged.get("lost", 0)
        assert metric(m, "pathway_attempts_total", service="eth", endpoint=f"127.0.0.1:{sp}", result="cancelled") > 0
        # a percentile delay follows the service's observed latency (230 relays recorded so far, most
        # of them fast): p90 with a floor of 20 ms hedges the slow endpoint's requests as well
        pw.write(pw.text(services=[("eth", urls, "hedge: {delay: p90, min_delay: 20ms}\nretry: {budget: {percent: 100}}")]))
        assert pw.reload()[0] == 200
        ms, hedged = timed_requests(pw.port, 60)
        print(f"p99 with hedge.delay p90 (min_delay 20ms) {p99_ms(ms):.1f} ms (60 requests), hedges {hedged}")
        assert hedged.get("won", 0) > 0 and p99_ms(ms) < 150, (hedged, sorted(ms)[-5:])
        # an unsafe method is never hedged: it waits for the slow endpoint when it lands there
        c = Client(pw.port)
        before = sum(mock_stats(p)["requests"] for p in [sp] + [p for _, p in fast])
        for i in range(6):
            st, h, _ = c.post(dict(SEND_RAW, id=i))
            assert st == 200 and "x-pathway-hedged" not in h
        assert sum(mock_stats(p)["requests"] for p in [sp] + [p for _, p in fast]) == before + 6
        c.close()
    finally:
        stop_all(pw, [slow] + [m for m, _ in fast])


@test
def test_knobs_change_at_runtime_through_reload():
    dead = pwtest.free_port()
    good, gp = start_mock()
    urls = [f"http://127.0.0.1:{dead}", f"http://127.0.0.1:{gp}"]
    pw = None
    try:
        pw = Pathway([("eth", urls, "retry: {max_attempts: 1}\noutlier: {consecutive_failures: 0, failure_rate: {threshold: 0}}")])
        c = Client(pw.port)
        off = [c.post(dict(CALL, id=i))[0] for i in range(20)]
        assert 502 in off, off  # retries off: the refused endpoint's failures reach the client
        pw.write(pw.text(services=[("eth", urls, "retry: {max_attempts: 2, backoff: {base: 0s}, budget: {min_concurrent: 50}}\noutlier: {consecutive_failures: 0, failure_rate: {threshold: 0}}")]))
        st, _, body = pw.reload()
        assert st == 200 and body["changed"], body
        on = [c.post(dict(CALL, id=i))[0] for i in range(20)]
        assert on == [200] * 20, on
        # retry_on without connect_failure: refused connects are not retried any more
        pw.write(pw.text(services=[("eth", urls, "retry: {max_attempts: 2, retry_on: [http_5xx]}\noutlier: {consecutive_failures: 0, failure_rate: {threshold: 0}}")]))
        assert pw.reload()[0] == 200
        again = [c.post(dict(CALL, id=i))[0] for i in range(20)]
        assert 502 in again, again
        # unsafe_methods emptied: eth_sendRawTransaction is an ordinary call (still retried on refusal)
        pw.write(pw.text(services=[("eth", urls, "retry: {max_attempts: 2, unsafe_methods: [], budget: {min_concurrent: 50}}\noutlier: {consecutive_failures: 0, failure_rate: {threshold: 0}}")]))
        assert pw.reload()[0] == 200
        assert [c.post(dict(SEND_RAW, id=i))[0] for i in range(10)] == [200] * 10
        c.close()
    finally:
        stop_all(pw, [good])


@test
def test_knobs_change_at_runtime_through_a_push():
    # a managed dataplane: the control plane pushes retries on, then hedging, with no restart
    dead = pwtest.free_port()
    good, gp = start_mock()
    slow, sp = start_mock("--latency", "300")

    def doc(service):
        return {"services": [dict({"id": "eth"}, **service)]}

    eps = [{"url": f"http://127.0.0.1:{dead}"}, {"url": f"http://127.0.0.1:{gp}"}]
    seed = pwtest.write_file(tempfile.mkdtemp(prefix="pw-fo-"), "seed.json",
                             json.dumps(doc({"endpoints": eps, "retry": {"max_attempts": 1}})))
    cp = cp_util.ControlPlane(seed=seed)
    pw = None
    try:
        state = tempfile.mkdtemp(prefix="pw-fo-state-")
        pw = Pathway([("eth", [f"http://127.0.0.1:{gp}"], "")], threads=1,
                     extra=f"control_plane:\n  url: http://127.0.0.1:{cp.port}\n"
                           f"  token_file: {os.path.join(cp.dir, 'dataplane.token')}\n  id: dp-fo\n"
                           f"  state_dir: {state}\n  heartbeat_interval: 300ms\n")
        wait_for(lambda: "pathway_config_version 1\n" in pw.metrics(), what="the seed applied")
        c = Client(pw.port)
        assert 502 in [c.post(dict(CALL, id=i))[0] for i in range(20)]  # retries off
        got = cp_util.expect(cp.call("PUT", "/v1/config", doc({"endpoints": eps, "retry": {
            "max_attempts": 2, "backoff": {"base": "0s"}, "budget": {"min_concurrent": 50}}}),
            headers={"Pathway-Message": "retries on"}), 201)
        v = got[2]["version"]
        wait_for(lambda: "pathway_config_version %d" % v in pw.metrics(), what=f"version {v} applied")
        assert [c.post(dict(CALL, id=i))[0] for i in range(20)] == [200] * 20
        # hedging pushed: a slow endpoint's requests are answered by a hedge
        got = cp_util.expect(cp.call("PUT", "/v1/config", doc({
            "endpoints": [{"url": f"http://127.0.0.1:{sp}"}, {"url": f"http://127.0.0.1:{gp}"}],
            "hedge": {"delay": "20ms"}, "retry": {"budget": {"percent": 100}}}), headers={"Pathway-Message": "hedge"}), 201)
        v = got[2]["version"]
        wait_for(lambda: "pathway_config_version %d" % v in pw.metrics(), what=f"version {v} applied")
        results = [c.post(dict(CALL, id=i)) for i in range(6)]
        assert all(st == 200 for st, _, _ in results)
        assert sum(h.get("x-pathway-hedged") == "won" for _, h, _ in results) >= 2, [h for _, h, _ in results]
        c.close()
    finally:
        stop_all(pw, [good, slow])
        cp.stop()


@test
def test_a_hedge_that_loses_is_cancelled_and_counted():
    # two endpoints, 60 ms and 400 ms: a request that starts on the 60 ms one hedges to the slow one
    # after 20 ms and its first try wins (the hedge is "lost", cancelled); one that starts on the slow
    # one is won by its hedge
    mid, mp = start_mock("--latency", "60")
    slow, sp = start_mock("--latency", "400")
    urls = [f"http://127.0.0.1:{mp}", f"http://127.0.0.1:{sp}"]
    pw = None
    try:
        pw = Pathway([("eth", urls, "hedge: {delay: 20ms, max_extra: 1}\nretry: {budget: {percent: 100}}")], threads=1)
        ms, hedged = timed_requests(pw.port, 12)
        print(f"12 requests: hedges {hedged}, slowest {max(ms):.0f} ms")
        assert hedged.get("lost", 0) > 0 and hedged.get("won", 0) > 0, hedged
        assert hedged["lost"] + hedged["won"] == 12, hedged  # every request hedged once
        assert max(ms) < 300, sorted(ms)  # never the slow endpoint's answer
        m = pw.metrics()
        assert metric(m, "pathway_hedges_total", service="eth", outcome="lost") == hedged["lost"]
        assert metric(m, "pathway_hedges_total", service="eth", outcome="won") == hedged["won"]
        # the slow endpoint's tries were all given up (its answers never used)
        assert metric(m, "pathway_attempts_total", service="eth", endpoint=f"127.0.0.1:{sp}", result="cancelled") == 12
    finally:
        stop_all(pw, [mid, slow])


if __name__ == "__main__":
    main()
