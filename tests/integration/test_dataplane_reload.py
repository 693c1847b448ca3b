"""Dataplane generations: hitless reload (POST /reload and SIGHUP), bad files, restart-only
changes, pools carried over, graceful SIGTERM."""

import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402
from pwtest import test  # noqa: E402
from dp_util import Pathway, start_mock, mock_stats, wait_for, counters_at_zero, send_signal  # noqa: E402

CALL = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}


class Load:
    """Clients sending requests in a loop until stopped; counts every outcome."""

    def __init__(self, pw, service="eth", clients=8):
        self.pw, self.service = pw, service
        self.ok = 0
        self.failures = []
        self.stop_flag = False
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.stop_flag:
            try:
                st, _, body = self.pw.rpc(self.service, CALL, timeout=10)
                with self.lock:
                    if st == 200 and body.get("result") == "0x1":
                        self.ok += 1
                    else:
                        self.failures.append((st, body))
            except Exception as e:  # noqa: BLE001 - a failure to report
                with self.lock:
                    self.failures.append(repr(e))

    def stop(self):
        self.stop_flag = True
        for t in self.threads:
            t.join(20)


@test
def test_reload_under_load_zero_failures():
    _, a = start_mock("--latency", "5")
    _, b = start_mock("--latency", "5")
    pw = Pathway([("eth", [f"http://127.0.0.1:{a}"], "")])
    load = Load(pw)
    try:
        time.sleep(0.3)
        variants = [
            ("eth", [f"http://127.0.0.1:{a}"], "pool:\n  max_conns_per_host: 7"),
            ("eth", [f"http://127.0.0.1:{a}", f"http://127.0.0.1:{b}"], ""),
            ("eth", [f"http://127.0.0.1:{b}"], "limiter:\n  max_concurrent: 3"),
            ("eth", [f"http://127.0.0.1:{a}"], "timeouts:\n  request: 10s"),
        ]
        generation = 1
        for i, v in enumerate(variants * 2):
            pw.write(pw.text(services=[v], extra=f"limiter:\n  max_concurrent: {50 + i}"))
            if i % 2 == 0:
                st, _, body = pw.reload()
                assert st == 200 and body["ok"], body
                generation += 1
                assert body["generation"] == generation and body["changed"], body
            else:
                send_signal(pw.proc, signal.SIGHUP)
                generation += 1
                wait_for(lambda: pw.stats()["generation"] == generation, what=f"generation {generation} after SIGHUP")
            time.sleep(0.15)
    finally:
        load.stop()
    assert not load.failures, load.failures[:5]
    assert load.ok > 50, load.ok
    assert mock_stats(b)["requests"] > 0 and mock_stats(a)["requests"] > 0
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


@test
def test_bad_file_changes_nothing():
    _, up = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")])
    good_hash = pw.stats()["hash"]
    pw.write("limiter:\n  max_concurrent: lots\nservices:\n  - id: eth\n    endpoints: []\n")
    st, _, body = pw.reload()
    assert st == 400 and body["ok"] is False, body
    assert any("limiter.max_concurrent" in e for e in body["errors"]), body
    assert len(body["errors"]) >= 2, body
    send_signal(pw.proc, signal.SIGHUP)
    wait_for(lambda: "reload failed" in pw.proc.output(), what="SIGHUP error logged")
    assert "limiter.max_concurrent" in pw.proc.output()
    s = pw.stats()
    assert s["generation"] == 1 and s["hash"] == good_hash, s
    assert s["applies"]["failed"] == 2 and s["applies"]["last_error"], s["applies"]
    assert pw.rpc("eth", CALL)[0] == 200
    # an endpoint CA file that cannot be read is refused too (the schema cannot check files)
    pw.write(pw.text(services=[("eth", ["https://127.0.0.1:1"], "")]).replace(
        "      - url: https://127.0.0.1:1", "      - url: https://127.0.0.1:1\n        tls:\n          ca_file: /nonexistent/ca.pem"))
    st, _, body = pw.reload()
    assert st == 400 and any("ca_file" in e for e in body["errors"]), body
    assert pw.stats()["generation"] == 1


@test
def test_reload_that_changes_nothing_makes_no_generation():
    _, up = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")])
    st, _, body = pw.reload()
    assert st == 200 and body["ok"] and body["changed"] is False and body["generation"] == 1, body
    assert "nothing changed" in pw.proc.output()
    send_signal(pw.proc, signal.SIGHUP)
    wait_for(lambda: pw.proc.output().count("nothing changed") == 2, what="SIGHUP handled")
    # the same document written differently (order, comments) is still the same document
    pw.write("# same\n" + pw.text())
    st, _, body = pw.reload()
    assert body["changed"] is False, body
    s = pw.stats()
    assert s["generation"] == 1 and s["applies"]["ok"] == 1, s
    # a real change does make one
    pw.write(pw.text(extra="limiter:\n  max_concurrent: 5"))
    st, _, body = pw.reload()
    assert body["changed"] is True and body["generation"] == 2, body
    assert pw.stats()["limiter"]["max_concurrent"] == 5


@test
def test_restart_only_changes_are_reported():
    _, up = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")])
    pw.write(pw.text(port=pwtest.free_port()))
    st, _, body = pw.reload()
    assert st == 200 and body["ok"], body
    assert any(p.startswith("listen") for p in body["restart_required"]), body
    assert "restart-only" in pw.proc.output()
    # the old listener still serves
    assert pw.rpc("eth", CALL)[0] == 200


@test
def test_pools_carry_over_when_unchanged():
    _, up = start_mock()
    # one worker: idle connections are per worker, and which worker accepts a new client
    # connection is the kernel's choice (SO_REUSEPORT), which is not what this test is about
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")], threads=1)
    for _ in range(5):
        assert pw.rpc("eth", CALL)[0] == 200
    before = mock_stats(up)["connections_total"]
    pw.write(pw.text(extra="log:\n  level: warn\nlimiter:\n  max_concurrent: 77"))
    st, _, body = pw.reload()
    assert st == 200, body
    for _ in range(5):
        assert pw.rpc("eth", CALL)[0] == 200
    assert mock_stats(up)["connections_total"] == before, "warm connection was dropped by an unrelated change"
    assert pw.stats()["limiter"]["max_concurrent"] == 77
    assert pw.stats()["log_level"] == "warn"
    # a pool setting change keeps the pool too: new bounds apply to the live one
    pw.write(pw.text(services=[("eth", [f"http://127.0.0.1:{up}"], "pool:\n  max_idle_per_host: 3\n  idle_timeout: 60s")]))
    assert pw.reload()[0] == 200
    assert pw.rpc("eth", CALL)[0] == 200
    assert mock_stats(up)["connections_total"] == before, "a pool bound change dropped the warm connection"
    assert pw.stats()["services"][0]["endpoints"][0]["max_idle_per_host"] == 3


@test
def test_in_flight_request_finishes_on_its_generation():
    _, slow = start_mock("--latency", "800")
    _, other = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{slow}"], "")])
    out = []
    t = threading.Thread(target=lambda: out.append(pw.rpc("eth", CALL, timeout=10)))
    t.start()
    wait_for(lambda: mock_stats(slow)["concurrent"] == 1, what="request at the upstream")
    pw.write(pw.text(services=[("eth", [f"http://127.0.0.1:{other}"], "")]))
    assert pw.reload()[0] == 200
    assert pw.rpc("eth", CALL)[0] == 200  # new generation: the other upstream
    t.join(10)
    assert out and out[0][0] == 200, out
    assert mock_stats(other)["requests"] == 1 and mock_stats(slow)["requests"] == 1
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")
    wait_for(lambda: mock_stats(slow)["connections"] == 0, what="retired pool closed")


@test
def test_sigterm_drains_then_exits_zero():
    _, slow = start_mock("--latency", "700")
    pw = Pathway([("eth", [f"http://127.0.0.1:{slow}"], "")])
    out = []
    t = threading.Thread(target=lambda: out.append(pw.rpc("eth", CALL, timeout=10)))
    t.start()
    wait_for(lambda: mock_stats(slow)["concurrent"] == 1, what="request at the upstream")
    send_signal(pw.proc, signal.SIGTERM)
    t.join(10)
    assert out and out[0][0] == 200, out
    pw.proc.p.wait(10)
    assert pw.proc.p.returncode == 0, pw.proc.output()
    assert "stopped" in pw.proc.output()


@test
def test_drain_is_bounded():
    _, hang = start_mock("--fault", "hang")
    pw = Pathway([("eth", [f"http://127.0.0.1:{hang}"], "timeouts:\n  request: 60s")], args=("--drain-timeout", "500"))
    def cut_short():
        try:
            pw.rpc("eth", CALL, timeout=10)
        except OSError:
            pass  # expected: the drain ends before the upstream answers

    t = threading.Thread(target=cut_short, daemon=True)
    t.start()
    wait_for(lambda: pw.stats()["requests"]["active"] == 1, what="request in flight")
    t0 = time.time()
    send_signal(pw.proc, signal.SIGTERM)
    pw.proc.p.wait(10)
    assert pw.proc.p.returncode == 0, pw.proc.output()
    assert time.time() - t0 < 3
    assert "drain timeout" in pw.proc.output()


@test
def test_max_conns_per_host_holds_across_generations():
    # Pool settings that flip A -> B -> A make a new endpoint object each time while older
    # generations still drain; the bound is the upstream's, counted once over all of them.
    _, up = start_mock("--latency", "100")
    svc = lambda n: [("eth", [f"http://127.0.0.1:{up}"], f"pool:\n  max_conns_per_host: {n}")]  # noqa: E731
    extra = "limiter:\n  max_concurrent: 100\n  max_queue: 100\n  queue_timeout: 20s"
    pw = Pathway(svc(4), extra=extra)
    load = Load(pw, clients=30)
    try:
        for i in range(12):
            time.sleep(0.25)
            pw.write(pw.text(services=svc(3 if i % 2 == 0 else 4)))
            st, _, body = pw.reload()
            assert st == 200 and body["ok"], body
        time.sleep(0.3)
    finally:
        load.stop()
    assert not load.failures, load.failures[:5]
    ms = mock_stats(up)
    assert ms["peak_connections"] <= 4, ms
    assert ms["peak_concurrent"] <= 4, ms
    assert load.ok > 30, load.ok
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


@test
def test_raising_max_request_body_by_reload():
    # h2o's own cap on request bodies used to stay at twice the start value (2 MiB here), so a
    # raised limit half worked: 3 MiB got h2o's plain-text 413.
    _, up = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")], extra="limits:\n  max_request_body: 1MiB")
    body = {"jsonrpc": "2.0", "id": 11, "method": "eth_call", "params": ["x" * (3 * 1024 * 1024)]}
    mid = {"jsonrpc": "2.0", "id": 12, "method": "eth_call", "params": ["x" * (1536 * 1024)]}
    st, hdrs, resp = pw.rpc("eth", mid)
    assert st == 413 and resp["id"] == 12 and hdrs["content-type"] == "application/json", (st, resp)
    pw.write(pw.text(extra="limits:\n  max_request_body: 4MiB"))
    st, _, r = pw.reload()
    assert st == 200 and r["ok"], r
    st, _, resp = pw.rpc("eth", body, timeout=30)
    assert st == 200 and resp["id"] == 11, (st, resp)
    # lowered again: Pathway's JSON 413, not h2o's
    pw.write(pw.text(extra="limits:\n  max_request_body: 1MiB"))
    st, _, r = pw.reload()
    assert st == 200 and r["ok"], r
    st, hdrs, resp = pw.rpc("eth", body, timeout=30)
    assert st == 413 and resp["id"] == 11 and "max_request_body" in resp["error"]["message"], (st, resp)
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


if __name__ == "__main__":
    pwtest.main()
