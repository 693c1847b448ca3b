#!/usr/bin/env python3
"""Adaptive concurrency against pathway-mock-upstream's capacity model (docs/benchmarks.md,
"Adaptive concurrency"). Loopback only, bounded in time (about 80 s with the defaults).

The mock has K = 16 workers of T = 20 ms (capacity K / T = 800 answers/s); wrk keeps 200 clients
on Pathway:
  1. static:   limiter.max_concurrent 1000, adaptive off;
  2. adaptive: switched on by a reload (max_concurrent 0, the adaptive defaults);
  3. K 16 -> 64, then 64 -> 8, through the mock's control call, while the load runs.
It prints, per phase, the upstream's latency (the mock's own arrival-to-answer time, its queue
included: Pathway's send to the answer less loopback transit), the throughput against the mock's
capacity, the limit's range, and how long the limit took to enter [0.7K, 2K] after each change.
It polls every 0.25 s and draws limit, latency and throughput over time with gnuplot
(docs/adaptive.png by default).

  usage: tools/bench/adaptive.py [builddir] [--seconds S] [--png FILE] [--no-plot]
"""

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BODY = '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
T_MS = 20
CLIENTS = 200


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def call(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps(body) if body is not None else None
    c.request(method, path, data, {"Content-Type": "application/json"} if data is not None else {})
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, json.loads(out) if out else None


def config(port, admin, upstream, adaptive):
    limiter = ("    max_concurrent: 0\n    adaptive:\n      enabled: true\n" if adaptive else
               "    max_concurrent: 1000\n    adaptive:\n      enabled: false\n")
    return f"""listen:
  - address: 127.0.0.1:{port}
admin:
  address: 127.0.0.1:{admin}
threads: 1
limiter:
  max_concurrent: 2000
  max_queue: 2000
  queue_timeout: 30s
defaults:
  pool:
    max_conns_per_host: 1100
    max_idle_per_host: 1100
  timeouts:
    request: 60s
  limiter:
{limiter}services:
  - id: eth
    endpoints:
      - url: http://127.0.0.1:{upstream}
"""


class Poller:
    """Every 0.25 s: the adaptive limit (Pathway's /stats), the mock's answers and their latencies
    since the last poll (the mock's /stats, then /reset-stats)."""

    def __init__(self, admin, mock):
        self.admin, self.mock = admin, mock
        self.rows = []  # (t, phase, K, limit, answered/s, p99 ms of the interval)
        self.hist = {}  # phase -> {ms: count}
        self.answered = {}  # phase -> (answers, seconds)
        self.phase, self.k = "idle", 16
        self.t0 = time.time()
        self.stop_flag = threading.Event()
        call(mock, "POST", "/reset-stats")
        self.last = time.time()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        while not self.stop_flag.wait(0.25):
            _, st = call(self.admin, "GET", "/stats")
            a = st["services"][0]["adaptive"]
            _, ms = call(self.mock, "GET", "/stats")
            call(self.mock, "POST", "/reset-stats")
            now = time.time()
            dt, self.last = now - self.last, now
            h = self.hist.setdefault(self.phase, {})
            for b, n in ms["latency_ms"]:
                h[b] = h.get(b, 0) + n
            n0, s0 = self.answered.get(self.phase, (0, 0.0))
            self.answered[self.phase] = (n0 + ms["answered"], s0 + dt)
            self.rows.append((now - self.t0, self.phase, self.k, a.get("limit", 0) if a["enabled"] else 0,
                              ms["answered"] / dt, percentile(dict(ms["latency_ms"]), 0.99)))

    def set_phase(self, phase):
        self.phase = phase

    def finish(self):
        self.stop_flag.set()
        self.thread.join()


def percentile(hist, q):
    total = sum(hist.values())
    if total == 0:
        return 0
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= q * total:
            return b
    return max(hist)


def wrk(url, seconds, lua):
    r = subprocess.run(["wrk", "-t2", f"-c{CLIENTS}", f"-d{seconds}s", "--timeout", "30s", "--latency", "-s", lua, url],
                       capture_output=True, text=True, timeout=seconds + 60)
    out = r.stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out).group(1)
    return {"total": total, "non2xx": int(non2xx.group(1)) if non2xx else 0, "client_p99": p99}


def settle_time(rows, phase, k, t_change):
    """Seconds from t_change until the limit is in [0.7K, 2K] (first poll inside)."""
    for t, ph, _, limit, _, _ in rows:
        if ph == phase and t >= t_change and 0.7 * k <= limit <= 2 * k:  # noqa: PLR2004
            return t - t_change
    return None


def plot(rows, png, marks):
    gp = shutil.which("gnuplot")
    if gp is None:
        print("gnuplot not found: install Debian's gnuplot-nox (make deps); no plot", file=sys.stderr)
        return False
    d = tempfile.mkdtemp(prefix="pw-adaptive-")
    data = os.path.join(d, "series.dat")
    with open(data, "w") as f:
        for t, _, k, limit, rate, p99 in rows:
            f.write(f"{t:.2f} {k} {limit} {rate:.1f} {p99} {0.7 * k:.1f} {2 * k}\n")
    arrows = "".join(f'set arrow from {t:.1f}, graph 0 to {t:.1f}, graph 1 nohead dt 2 lc rgb "gray"\n'
                     f'set label "{name}" at {t + 0.5:.1f}, graph 0.93 font ",9"\n' for t, name in marks)
    script = f"""set terminal pngcairo size 1100,900 font ",10"
set output "{png}"
set multiplot layout 3,1 title "Adaptive concurrency: mock K workers x {T_MS} ms, {CLIENTS} clients (static, then adaptive; K 16 -> 64 -> 8)"
set grid
set key outside right top vertical font ",9"
set lmargin 10
set rmargin 34
set xlabel "seconds"
{arrows}
set ylabel "concurrency"
set logscale y 2
plot "{data}" u 1:3 w steps lw 2 t "Pathway limit (0 = off)", "{data}" u 1:2 w steps lc rgb "black" t "mock K", \\
     "{data}" u 1:6 w steps dt 3 lc rgb "gray" t "0.7K", "{data}" u 1:7 w steps dt 3 lc rgb "gray" t "2K"
unset logscale y
set ylabel "upstream p99 (ms)"
set logscale y 10
plot "{data}" u 1:5 w lines lw 2 t "mock arrival -> answer, p99 per 0.25 s", {3 * T_MS} w lines dt 2 lc rgb "red" t "3T"
unset logscale y
set ylabel "answers/s"
plot "{data}" u 1:4 w lines lw 2 t "throughput (mock)", "{data}" u 1:($2 * 1000 / {T_MS}) w steps dt 2 lc rgb "black" t "capacity K/T", \\
     "{data}" u 1:($2 * 900 / {T_MS}) w steps dt 3 lc rgb "gray" t "90%"
unset multiplot
"""
    r = subprocess.run([gp], input=script, text=True, capture_output=True, timeout=60)
    shutil.rmtree(d, ignore_errors=True)
    if r.returncode != 0:
        print("gnuplot failed:\n" + r.stderr, file=sys.stderr)
        return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=int, default=20, help="length of the static and adaptive phases (20)")
    ap.add_argument("--png", default=os.path.join(ROOT, "docs", "adaptive.png"))
    ap.add_argument("--no-plot", action="store_true")
    a = ap.parse_args()
    for tool in ["wrk"]:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: make deps installs it")
    pathway = os.path.join(a.build, "dataplane", "pathway")
    mockbin = os.path.join(a.build, "tools", "pathway-mock-upstream")
    for b in (pathway, mockbin):
        if not os.path.exists(b):
            sys.exit(f"{b} not built: make build")

    tmp = tempfile.mkdtemp(prefix="pw-adaptive-")
    procs = []
    try:
        up, ctl, port, admin = free_port(), free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([mockbin, "--port", str(up), "--control-port", str(ctl), "--capacity", "16",
                                       "--service-time", str(T_MS)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(up)
        wait_port(ctl)
        cfg = os.path.join(tmp, "pathway.yaml")
        with open(cfg, "w") as f:
            f.write(config(port, admin, up, adaptive=False))
        log = open(os.path.join(tmp, "pathway.log"), "w")
        procs.append(subprocess.Popen([pathway, "-c", cfg], stdout=log, stderr=subprocess.STDOUT))
        wait_port(admin)
        wait_port(port)
        lua = os.path.join(tmp, "post.lua")
        with open(lua, "w") as f:
            f.write(f"wrk.method = 'POST'\nwrk.body = '{BODY}'\nwrk.headers['Content-Type'] = 'application/json'\n")
        url = f"http://127.0.0.1:{port}/v1/eth"

        poll = Poller(admin, up)
        marks = []
        results = {}
        # 1. static
        poll.set_phase("static")
        marks.append((time.time() - poll.t0, "static"))
        results["static"] = wrk(url, a.seconds, lua)
        # 2. adaptive, switched on at runtime
        with open(cfg, "w") as f:
            f.write(config(port, admin, up, adaptive=True))
        status, _ = call(admin, "POST", "/reload", {})
        assert status == 200, status
        poll.set_phase("adaptive-start")  # its first 5 s: the static phase's queue drains, the limit settles
        t_on = time.time() - poll.t0
        marks.append((t_on, "adaptive on"))
        settle = threading.Timer(5, poll.set_phase, args=("adaptive",))
        settle.start()
        results["adaptive"] = wrk(url, a.seconds + 5, lua)
        # 3. K 16 -> 64 -> 8 while the load runs
        changes = {}

        def change_k():
            time.sleep(2)
            call(ctl, "POST", "/control", {"capacity": 64})
            poll.k = 64
            changes[64] = time.time() - poll.t0
            marks.append((changes[64], "K=64"))
            time.sleep(15)
            call(ctl, "POST", "/control", {"capacity": 8})
            poll.k = 8
            changes[8] = time.time() - poll.t0
            marks.append((changes[8], "K=8"))

        poll.set_phase("changes")
        ch = threading.Thread(target=change_k)
        ch.start()
        results["changes"] = wrk(url, 2 + 15 + 12, lua)
        ch.join()
        poll.finish()
        rows = poll.rows
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    capacity = 16 * 1000 / T_MS
    print(f"# mock K = 16 x T = {T_MS} ms (capacity {capacity:.0f}/s), {CLIENTS} clients (wrk), loopback, 1 pathway worker\n")
    print("| phase | upstream p50 | upstream p99 | p99 / T | throughput | of capacity | limit (last half) | client p99 | non-2xx |")
    print("|---|---|---|---|---|---|---|---|---|")
    for ph in ("static", "adaptive"):  # adaptive: from 5 s after switching on
        h = poll.hist.get(ph, {})
        n, s = poll.answered.get(ph, (0, 1))
        lims = [r[3] for r in rows if r[1] == ph]
        half = lims[len(lims) // 2:] or [0]
        print(f"| {ph} | {percentile(h, 0.5)} ms | {percentile(h, 0.99)} ms | {percentile(h, 0.99) / T_MS:.1f} | {n / s:.0f}/s | "
              f"{n / s / capacity * 100:.0f}% | {min(half)}-{max(half)} | {results[ph]['client_p99']} | {results[ph]['non2xx']} |")
    # the adaptive steady state, after its first 5 s
    steady = [r for r in rows if r[1] == "adaptive"]
    inside = sum(1 for r in steady if 0.7 * 16 <= r[3] <= 32)
    print(f"\nadaptive, from 5 s after switching on: limit {min(r[3] for r in steady)}-{max(r[3] for r in steady)}, "
          f"{inside * 100 // max(1, len(steady))}% of polls in [0.7K, 2K] = [11.2, 32], mean throughput "
          f"{sum(r[4] for r in steady) / max(1, len(steady)):.0f}/s")
    up64 = settle_time(rows, "changes", 64, changes.get(64, 0))
    down8 = settle_time(rows, "changes", 8, changes.get(8, 0))
    print(f"K 16 -> 64: limit in [44.8, 128] after {up64 if up64 is None else round(up64, 1)} s (target 10 s)")
    print(f"K 64 -> 8:  limit in [5.6, 16] after {down8 if down8 is None else round(down8, 1)} s (target 5 s)")
    after64 = [r for r in rows if r[1] == "changes" and changes[64] + 8 <= r[0] < changes[8]]
    after8 = [r for r in rows if r[1] == "changes" and r[0] >= changes[8] + 5]
    if after64:
        print(f"K = 64, from 8 s after the change: limit {min(r[3] for r in after64)}-{max(r[3] for r in after64)}, "
              f"throughput {sum(r[4] for r in after64) / len(after64):.0f}/s of {64000 / T_MS:.0f}")
    if after8:
        print(f"K = 8, from 5 s after the change: limit {min(r[3] for r in after8)}-{max(r[3] for r in after8)}, "
              f"throughput {sum(r[4] for r in after8) / len(after8):.0f}/s of {8000 / T_MS:.0f}")
    if not a.no_plot and plot(rows, a.png, marks):
        print(f"\nplot: {os.path.relpath(a.png, ROOT) if a.png.startswith(ROOT) else a.png}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
