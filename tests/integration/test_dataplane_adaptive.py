"""Adaptive concurrency (limiter.adaptive) against pathway-mock-upstream's capacity model: the limit
finds a small upstream's capacity and bounds what reaches it; it is switched on and off at runtime
without a restart and without a failed request; refusals while it binds count with
reason="adaptive"; /stats and /metrics show the limit, the baseline and the sample; a 5% slow
method does not drive the limit to its minimum."""

import http.client
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402
from pwtest import test  # noqa: E402
from dp_util import Pathway, start_mock, mock_stats, wait_for, parallel, promtool_check, admin_post  # noqa: E402

# the process-wide limiter never binds here; the pool does not either (the mock queues, not pathway's pool)
BASE = """limiter:
  max_concurrent: 1000
  max_queue: 1000
  queue_timeout: 10s
defaults:
  pool:
    max_conns_per_host: 500
    max_idle_per_host: 500
  limiter:
{limiter}"""

ADAPTIVE_ON = """    adaptive:
      enabled: true
      min_limit: 2
      initial_limit: 20
      window: 200ms"""
ADAPTIVE_OFF = """    adaptive:
      enabled: false"""


class Load:
    """`clients` threads relaying on keep-alive connections until finish(); `pick(i)` gives the
    method of a client's i-th request. Every answer that is not a 200 with a result is a failure."""

    def __init__(self, port, clients, pick=lambda i: "eth_chainId"):
        self.port, self.pick = port, pick
        self.stop_flag = threading.Event()
        self.ok, self.failures, self.lock = 0, [], threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(c,)) for c in range(clients)]
        for t in self.threads:
            t.start()

    def run(self, c):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        i = c
        while not self.stop_flag.is_set():
            body = json.dumps({"jsonrpc": "2.0", "id": i, "method": self.pick(i), "params": []})
            i += 1
            try:
                conn.request("POST", "/v1/eth", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                failure = None if r.status == 200 and "result" in json.loads(data) else (r.status, data[:200])
            except Exception as e:  # noqa: BLE001 - a reset or a timeout is a failure too
                failure = ("exception", repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            with self.lock:
                if failure is None:
                    self.ok += 1
                else:
                    self.failures.append(failure)
        conn.close()

    def finish(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)
        return self


def adaptive_of(pw):
    return pw.stats()["services"][0]["adaptive"]


def mock_peak_over(mock_port, seconds):
    """The most requests the mock held at once (served + queued inside it) during `seconds`."""
    pwtest.request_json(mock_port, "POST", "/reset-stats")
    time.sleep(seconds)
    return mock_stats(mock_port)["peak_concurrent"]


def metric(text, name, labels):
    m = re.search(r"^" + re.escape(name) + r"\{" + re.escape(labels) + r"\} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


@test
def test_limit_finds_capacity_and_reports():
    """K = 4, T = 5 ms (windows of 200 ms: many times the latency), 24 clients: the limit leaves 20
    for about K (within [0.7K, 2K] plus one growth step), the mock never holds 24 at once, and
    /stats and /metrics show limit, baseline (about T) and sample."""
    _, up = start_mock("--capacity", "4", "--service-time", "5")
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")], extra=BASE.format(limiter=ADAPTIVE_ON))
    a = adaptive_of(pw)
    assert a["enabled"] is True and a["limit"] == 20 and a["rejected"] == 0, a
    assert a["settings"] == {"min_limit": 2, "max_limit": 1000, "initial_limit": 20, "tolerance": 1.5, "window": "200ms",
                             "smoothing": 0.2}, a["settings"]
    load = Load(pw.port, 24)
    try:
        wait_for(lambda: adaptive_of(pw)["windows"] >= 10, timeout=20, what="10 windows")
        peak = mock_peak_over(up, 1.5)
        a = adaptive_of(pw)
    finally:
        load.finish()
    assert not load.failures, load.failures[:5]
    assert 2 <= a["limit"] <= 10, a  # [0.7K, 2K] = [2.8, 8], plus one growth step of sqrt(8)
    assert peak <= 12, f"the mock held {peak} requests at once: the adaptive limit did not bound them"
    assert 0.004 <= a["baseline_seconds"] <= 0.012, a  # T = 5 ms, unqueued (the initial 20 queued: 25 ms)
    assert a["sample_seconds"] >= a["baseline_seconds"] * 0.9 and a["samples"] > 100, a
    text = pw.metrics()
    lim = metric(text, "pathway_adaptive_limit", 'service="eth"')
    base = metric(text, "pathway_adaptive_baseline_seconds", 'service="eth"')
    sample = metric(text, "pathway_adaptive_sample_seconds", 'service="eth"')
    assert lim is not None and 2 <= lim <= 10, lim
    assert base is not None and 0.004 <= base <= 0.012, base
    assert sample is not None and sample > 0, sample
    assert metric(text, "pathway_limiter_rejected_total", 'scope="service",service="eth",reason="adaptive"') == 0
    # the settings as gauges
    assert metric(text, "pathway_adaptive_enabled", 'service="eth"') == 1
    assert metric(text, "pathway_adaptive_min_limit", 'service="eth"') == 2
    assert metric(text, "pathway_adaptive_window_seconds", 'service="eth"') == 0.2
    assert metric(text, "pathway_adaptive_tolerance_ratio", 'service="eth"') == 1.5
    promtool_check(text)


@test
def test_switch_on_and_off_at_runtime_without_drops():
    """16 clients run throughout. Off, the mock holds all 16; switched on by a reload, the adaptive
    limit bounds it (K = 4); switched off again, all 16 reach it. No request fails and the process
    is the same one."""
    _, up = start_mock("--capacity", "4", "--service-time", "5")
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")], extra=BASE.format(limiter=ADAPTIVE_OFF))
    pid = pw.proc.p.pid
    load = Load(pw.port, 16)
    try:
        time.sleep(0.5)
        a = adaptive_of(pw)
        assert a["enabled"] is False and a["rejected"] == 0 and "limit" not in a, a
        off_peak = mock_peak_over(up, 1.0)
        assert off_peak >= 14, off_peak
        pw.extra = BASE.format(limiter=ADAPTIVE_ON)
        pw.write()
        assert pw.reload()[0] == 200
        wait_for(lambda: adaptive_of(pw).get("windows", 0) >= 15, timeout=20, what="15 windows after switching on")
        on_peak = mock_peak_over(up, 1.0)
        assert on_peak <= 12, f"adaptive on: the mock still held {on_peak} at once"
        assert "pathway_adaptive_limit{" in pw.metrics()
        pw.extra = BASE.format(limiter=ADAPTIVE_OFF)
        pw.write()
        assert pw.reload()[0] == 200
        wait_for(lambda: adaptive_of(pw)["enabled"] is False, what="adaptive off")
        time.sleep(0.3)
        again = mock_peak_over(up, 1.0)
        assert again >= 14, f"adaptive off again: the mock held at most {again} (the limit stayed)"
        assert "pathway_adaptive_limit{" not in pw.metrics()
    finally:
        load.finish()
    assert not load.failures, load.failures[:5]
    assert load.ok > 500, load.ok
    assert pw.proc.alive() and pw.proc.p.pid == pid


@test
def test_refusals_while_adaptive_binds():
    """Adaptive limit 1 (min = max = 1), max_queue 2, queue_timeout 300 ms, K = 1, T = 200 ms: of 8
    requests at once, the ones beyond the queue are refused at once and the queued ones time out,
    each a 503 with Retry-After counted with reason="adaptive". With max_concurrent 1 binding
    instead, the same refusals count as queue_full / queue_timeout."""
    _, up = start_mock("--capacity", "1", "--service-time", "200")
    one = """    adaptive:
      enabled: true
      min_limit: 1
      max_limit: 1
      initial_limit: 1"""
    extra = BASE.format(limiter=one).replace("max_queue: 1000\n  queue_timeout: 10s", "max_queue: 2\n  queue_timeout: 300ms")
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")], extra=extra)
    res = parallel(8, lambda i: pw.rpc("eth", {"jsonrpc": "2.0", "id": i, "method": "eth_chainId"}, timeout=10))
    assert not [r for r in res if isinstance(r, Exception)], res
    busy = [r for r in res if r[0] == 503]
    assert len(busy) >= 5, [r[0] for r in res]  # 1 served, at most 2 more within the 300 ms
    for _, hdrs, body in busy:
        assert int(hdrs["retry-after"]) >= 1 and body["error"]["code"] == -32005, (hdrs, body)
    svc = pw.stats()["services"][0]
    assert svc["adaptive"]["rejected"] == len(busy), svc
    assert svc["limiter"]["rejected"] == 0 and svc["limiter"]["timeouts"] == 0, svc["limiter"]
    text = pw.metrics()
    assert metric(text, "pathway_limiter_rejected_total", 'scope="service",service="eth",reason="adaptive"') == len(busy)
    assert metric(text, "pathway_limiter_rejected_total", 'scope="service",service="eth",reason="queue_full"') == 0
    promtool_check(text)
    # the static bound binds now (adaptive 1 is not below it): the usual reasons
    pw.extra = extra.replace("  limiter:\n    adaptive:", "  limiter:\n    max_concurrent: 1\n    adaptive:")
    pw.write()
    assert pw.reload()[0] == 200
    res = parallel(8, lambda i: pw.rpc("eth", {"jsonrpc": "2.0", "id": i, "method": "eth_chainId"}, timeout=10))
    busy2 = [r for r in res if not isinstance(r, Exception) and r[0] == 503]
    assert len(busy2) >= 5, [r if isinstance(r, Exception) else r[0] for r in res]
    svc = pw.stats()["services"][0]
    assert svc["adaptive"]["rejected"] == len(busy), svc["adaptive"]
    assert svc["limiter"]["rejected"] + svc["limiter"]["timeouts"] == len(busy2), svc["limiter"]


@test
def test_slow_method_mix_keeps_the_limit():
    """95% of a 5 ms method and 5% of a 200 ms one (eth_getLogs) on an upstream with room for all
    (K = 64): the limit is never cut toward min_limit; one baseline for both methods would see the
    mean three times its minimum and cut."""
    _, up = start_mock("--capacity", "64", "--service-time", "5", "--method-time", "eth_getLogs=200")
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")], extra=BASE.format(limiter=ADAPTIVE_ON))
    load = Load(pw.port, 12, pick=lambda i: "eth_getLogs" if i % 20 == 0 else "eth_chainId")
    lows = []
    try:
        wait_for(lambda: adaptive_of(pw)["windows"] >= 5, timeout=20, what="5 windows")
        deadline = time.time() + 3
        while time.time() < deadline:
            lows.append(adaptive_of(pw)["limit"])
            time.sleep(0.1)
        a = adaptive_of(pw)
    finally:
        load.finish()
    assert not load.failures, load.failures[:5]
    # 12 clients fit (nothing queues at K = 64): at most a re-measuring cut (x0.8) below them, never
    # toward min_limit (2)
    assert min(lows) >= 8, f"the limit fell to {min(lows)}"
    assert sorted(lows)[len(lows) // 2] >= 12, lows
    assert a["ratio"] < 1.5, a
    assert a["samples"] > 200, a


if __name__ == "__main__":
    pwtest.main()
