"""Dataplane bounds seen from the upstream's side: limiter, max_conns_per_host, idle timeout,
clients that go away while queued or while streaming."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402
from pwtest import test  # noqa: E402
from dp_util import Pathway, start_mock, mock_stats, wait_for, counters_at_zero, parallel, raw_request, vm_hwm_kib  # noqa: E402

CALL = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"}


@test
def test_limiter_bounds_upstream_concurrency():
    _, up = start_mock("--latency", "200")
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")],
                 extra="limiter:\n  max_concurrent: 2\n  max_queue: 10\n  queue_timeout: 10s")
    res = parallel(50, lambda i: pw.rpc("eth", {"jsonrpc": "2.0", "id": i, "method": "eth_chainId"}, timeout=30))
    errors = [r for r in res if isinstance(r, Exception)]
    assert not errors, errors
    ok = [r for r in res if r[0] == 200]
    busy = [r for r in res if r[0] == 503]
    assert len(ok) + len(busy) == 50, [r[0] for r in res]
    assert len(ok) >= 12, len(ok)  # 2 running + 10 queued at least
    assert len(busy) >= 5, len(busy)  # the queue was full for the rest (how many depends on arrival times)
    for st, hdrs, body in busy:
        assert int(hdrs["retry-after"]) >= 1 and body["error"]["code"] == -32005, (hdrs, body)
    ms = mock_stats(up)
    assert ms["peak_concurrent"] <= 2, ms
    assert ms["requests"] == len(ok), (ms, len(ok))
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")
    s = pw.stats()
    assert s["limiter"]["rejected"] == len(busy), s["limiter"]


@test
def test_queue_timeout_gives_503():
    _, up = start_mock("--latency", "800")
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")],
                 extra="limiter:\n  max_concurrent: 1\n  max_queue: 10\n  queue_timeout: 200ms")
    res = parallel(4, lambda i: pw.rpc("eth", CALL, timeout=10))
    codes = sorted(r[0] for r in res)
    assert codes == [200, 503, 503, 503], codes
    assert pw.stats()["limiter"]["timeouts"] == 3
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


@test
def test_max_conns_per_host():
    _, up = start_mock("--latency", "100")
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "pool:\n  max_conns_per_host: 3")],
                 extra="limiter:\n  max_concurrent: 100\n  max_queue: 100\n  queue_timeout: 10s")
    res = parallel(30, lambda i: pw.rpc("eth", CALL, timeout=30))
    assert all(not isinstance(r, Exception) and r[0] == 200 for r in res), res
    ms = mock_stats(up)
    assert ms["peak_connections"] <= 3, ms
    assert ms["peak_concurrent"] <= 3, ms
    assert ms["requests"] == 30, ms
    s = pw.stats()
    assert s["services"][0]["endpoints"][0]["open"] <= 3
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


@test
def test_idle_connections_closed_after_idle_timeout():
    _, up = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "pool:\n  idle_timeout: 500ms\n  max_idle_per_host: 2")])
    res = parallel(6, lambda i: pw.rpc("eth", CALL))
    assert all(r[0] == 200 for r in res), res
    # never more than max_idle_per_host kept
    ep = pw.stats()["services"][0]["endpoints"][0]
    assert ep["idle"] <= 2, ep
    assert mock_stats(up)["connections"] >= 1
    wait_for(lambda: mock_stats(up)["connections"] == 0, timeout=5, what="upstream connections closed")
    ep = pw.stats()["services"][0]["endpoints"][0]
    assert ep["idle"] == 0 and ep["open"] == 0, ep
    assert pw.stats()["upstream"]["idle_total"] == 0


@test
def test_max_idle_total():
    ups = [start_mock()[1] for _ in range(3)]
    pw = Pathway([(f"s{i}", [f"http://127.0.0.1:{u}"], "") for i, u in enumerate(ups)],
                 extra="pool:\n  max_idle_total: 2")
    for i in range(3):
        res = parallel(3, lambda k: pw.rpc(f"s{i}", CALL))
        assert all(r[0] == 200 for r in res), res
    assert pw.stats()["upstream"]["idle_total"] <= 2
    assert sum(mock_stats(u)["connections"] for u in ups) <= 2


@test
def test_client_abort_while_queued_leaves_queue():
    _, up = start_mock("--latency", "1500")
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")],
                 extra="limiter:\n  max_concurrent: 1\n  max_queue: 100\n  queue_timeout: 30s")
    holder = raw_request(pw.port, '{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}')
    wait_for(lambda: pw.stats()["limiter"]["inflight"] == 1, what="first request admitted")
    waiting = [raw_request(pw.port, '{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}') for _ in range(5)]
    wait_for(lambda: pw.stats()["limiter"]["queued"] == 5, what="five queued")
    for s in waiting:
        s.close()
    # they leave the queue at once, not at queue_timeout
    wait_for(lambda: pw.stats()["limiter"]["queued"] == 0, timeout=1.0, what="queue empty")
    holder.close()
    wait_for(lambda: counters_at_zero(pw), timeout=10, what="counters at zero")
    assert mock_stats(up)["requests"] == 1
    assert pw.rpc("eth", CALL, timeout=10)[0] == 200


@test
def test_client_abort_while_upstream_works_frees_permits():
    # Admitted requests whose clients left used to keep their permits and upstream connections
    # until the upstream answered (or the request timed out).
    _, up = start_mock("--latency", "5000")
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")],
                 extra="limiter:\n  max_concurrent: 2\n  max_queue: 0\n  queue_timeout: 1s")
    gone = [raw_request(pw.port, '{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}') for _ in range(2)]
    wait_for(lambda: mock_stats(up)["concurrent"] == 2, what="two requests at the upstream")
    time.sleep(0.5)
    for s in gone:
        s.close()
    wait_for(lambda: pw.stats()["limiter"]["inflight"] == 0, timeout=2, what="permits back")
    ep = pw.stats()["services"][0]["endpoints"][0]
    assert ep["open"] == 0 and ep["outstanding"] == 0, ep  # closed, not kept for reuse mid-exchange
    start = time.time()
    st, _, body = pw.rpc("eth", {"jsonrpc": "2.0", "id": 3, "method": "eth_chainId"}, timeout=20)
    assert st == 200 and body["id"] == 3, (st, body)
    assert time.time() - start < 8
    wait_for(lambda: counters_at_zero(pw), timeout=5, what="counters at zero")
    assert pw.stats()["limiter"]["rejected"] == 0


@test
def test_client_half_close_counts_as_gone():
    # nginx's default: EOF from the client after a complete request means it left (see dp_relay.c)
    _, up = start_mock("--latency", "3000")
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")])
    s = raw_request(pw.port, '{"jsonrpc":"2.0","id":4,"method":"eth_chainId"}')
    wait_for(lambda: mock_stats(up)["concurrent"] == 1, what="request at the upstream")
    s.shutdown(socket.SHUT_WR)
    s.settimeout(2)
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    assert data.startswith(b"HTTP/1.1 499"), data[:200]
    wait_for(lambda: counters_at_zero(pw), timeout=5, what="counters at zero")


@test
def test_housekeeping_covers_every_pool():
    # Housekeeping used to look at the first 256 active pools of a worker only: the idle
    # connections of the rest outlived the retirement of their endpoints.
    _, up = start_mock()
    n = 800  # more than three passes of 256: the old code needed two 1 s sweeps on top of the kicks
    pool = "pool:\n  max_idle_per_host: 1000\n  max_conns_per_host: 1000\n  idle_timeout: 60s"
    services = [(f"s{i}", [f"http://127.0.0.1:{up}/p{i}"], pool) for i in range(n)]
    pw = Pathway(services, threads=1, extra="pool:\n  max_idle_total: 1000")
    for i in range(n):
        st, _, _ = pw.rpc(f"s{i}", CALL)
        assert st == 200, (i, st)
    assert mock_stats(up)["connections"] == n
    # every endpoint retired at once: each idle connection is closed
    pw.write(pw.text(services=[("eth", [f"http://127.0.0.1:{up}"], "")]))
    st, _, body = pw.reload()
    assert st == 200 and body["ok"], body
    wait_for(lambda: mock_stats(up)["connections"] == 0, timeout=0.9, what="all idle connections closed")
    assert pw.rpc("eth", CALL)[0] == 200


@test
def test_client_abort_while_streaming():
    _, up = start_mock("--response-size", str(50 * 1024 * 1024))
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")])
    for _ in range(3):
        s = raw_request(pw.port, '{"jsonrpc":"2.0","id":1,"method":"eth_call"}')
        got = 0
        while got < 256 * 1024:
            chunk = s.recv(65536)
            assert chunk, "stream ended early"
            got += len(chunk)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    wait_for(lambda: counters_at_zero(pw), timeout=10, what="counters at zero")
    # the upstream connections of the cut streams were closed, not reused mid-body
    wait_for(lambda: mock_stats(up)["connections"] == 0, timeout=10, what="upstream connections closed")
    st, _, body = pw.rpc("eth", {"jsonrpc": "2.0", "id": 5, "method": "eth_chainId"}, timeout=30)
    assert st == 200


@test
def test_overload_keeps_memory_bounded():
    _, up = start_mock("--latency", "300")
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")],
                 extra="limiter:\n  max_concurrent: 2\n  max_queue: 10\n  queue_timeout: 5s")
    assert pw.rpc("eth", CALL)[0] == 200
    base = vm_hwm_kib(pw.proc.p.pid)
    for _ in range(2):
        res = parallel(150, lambda i: pw.rpc("eth", {"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": ["x" * 4000]},
                                             timeout=30))
        assert not [r for r in res if isinstance(r, Exception)], [r for r in res if isinstance(r, Exception)][:3]
        codes = [r[0] for r in res]
        assert set(codes) <= {200, 503} and codes.count(503) >= 100, codes
    assert mock_stats(up)["peak_concurrent"] <= 2
    grown = vm_hwm_kib(pw.proc.p.pid) - base
    assert grown < 16 * 1024, f"peak RSS grew by {grown} KiB under overload"
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


@test
def test_connect_timeout_gives_502():
    # a listener whose accept queue is full drops SYNs: the connect hangs, on loopback
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    port = blackhole.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    time.sleep(0.2)
    try:
        pw = Pathway([("eth", [f"http://127.0.0.1:{port}"], "pool:\n  connect_timeout: 300ms")])
        t0 = time.time()
        st, _, body = pw.rpc("eth", CALL, timeout=10)
        took = time.time() - t0
        assert st == 502 and body["error"]["code"] == -32002, (st, body)
        assert took < 3, took
        ep = pw.stats()["services"][0]["endpoints"][0]
        assert ep["connect_errors"] >= 1 and ep["open"] == 0, ep
        wait_for(lambda: counters_at_zero(pw), what="counters at zero")
    finally:
        for c in fillers:
            c.close()
        blackhole.close()


@test
def test_upstream_closing_connections_is_not_a_failure():
    _, up = start_mock("--fault", "close-after=3")
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")], threads=1)
    for i in range(30):
        st, _, body = pw.rpc("eth", {"jsonrpc": "2.0", "id": i, "method": "eth_chainId"})
        assert st == 200 and body["id"] == i, (i, st, body)
    ep = pw.stats()["services"][0]["endpoints"][0]
    assert ep["connects"] >= 10 and ep["reuses"] >= 15, ep


if __name__ == "__main__":
    pwtest.main()
