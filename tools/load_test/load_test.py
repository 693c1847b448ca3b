#!/usr/bin/env python3
"""Pathway's load test: PATH's nine EVM methods plus a batch, per service, driven by wrk
(tools/load_test/evm.lua), with a per-service report and the dataplane's /stats before and after.

    tools/load_test/run.sh --services eth,poly --url http://127.0.0.1:3069 --duration 10s \
        [--rate 0] [--min-success 99.9] [--max-p99 1000ms] [--local --build build]

Exit: 0 every service met the thresholds, 1 a threshold was missed, 2 usage or setup error (wrk or a
binary missing), 3 the dataplane could not be reached. docs/load_test.md has the details.
Standard library only."""

import argparse
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "evm.lua")

EXIT_OK, EXIT_THRESHOLD, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class Fatal(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def parse_duration(s):
    """'10s', '500ms', '2m', '1m30s', or a bare number of seconds -> seconds (float)."""
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    total, pos = 0.0, 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|s|m|h)", s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"'{s}' is not a duration (e.g. 10s, 500ms, 2m)")
    return total


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_call(url, method="GET", path="/", body=None, headers=None, timeout=5.0):
    """One request; returns (status, body bytes). Raises OSError when nothing answers."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def get_stats(admin):
    """The dataplane's /stats as a dict, or None when the admin listener does not answer."""
    try:
        status, body = http_call(admin, path="/stats", timeout=3.0)
        return json.loads(body) if status == 200 else None
    except (OSError, ValueError):
        return None


class Local:
    """Mock upstreams (one per service) and a dataplane in front of them, on 127.0.0.1 ports picked
    here, all stopped by stop()."""

    def __init__(self, build, services, mock_latency_ms, dp_threads):
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix="pw-load-test-")
        try:
            self._start_all(build, services, mock_latency_ms, dp_threads)
        except BaseException:
            self.stop()  # what did start must not outlive a failed start
            raise

    def _start_all(self, build, services, mock_latency_ms, dp_threads):
        pathway = os.path.join(build, "dataplane", "pathway")
        mock = os.path.join(build, "tools", "pathway-mock-upstream")
        for b in (pathway, mock):
            if not os.access(b, os.X_OK):
                raise Fatal(EXIT_USAGE, f"--local needs {b}: build it first (make build, or cmake --build {build})")
        self.port, self.admin_port = free_port(), free_port()
        endpoints = {}
        for svc in services:
            port = free_port()
            args = [mock, "--host", "127.0.0.1", "--port", str(port)]
            if mock_latency_ms > 0:
                args += ["--latency", str(mock_latency_ms)]
            self.start(args, f"mock-{svc}")
            endpoints[svc] = port
        conf = [
            "# written by tools/load_test: a dataplane for one load test run",
            "listen:",
            f"  - address: 127.0.0.1:{self.port}",
            "admin:",
            f"  address: 127.0.0.1:{self.admin_port}",
            f"threads: {dp_threads}",
            "log:",
            "  level: warn",
            "services:",
        ]
        for svc, port in endpoints.items():
            conf += [f"  - id: {svc}", "    endpoints:", f"      - url: http://127.0.0.1:{port}"]
        self.config = os.path.join(self.dir, "pathway.yaml")
        with open(self.config, "w") as f:
            f.write("\n".join(conf) + "\n")
        for port in endpoints.values():
            self.wait_port(port, "mock upstream")
        self.dataplane = self.start([pathway, "-c", self.config], "pathway")
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.wait_ready()

    def start(self, args, name):
        log = open(os.path.join(self.dir, f"{name}.log"), "wb")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        p.pw_name, p.pw_log = name, log.name
        self.procs.append(p)
        return p

    def log_tail(self, p, n=2000):
        try:
            with open(p.pw_log, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def wait_port(self, port, what, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise Fatal(EXIT_USAGE, f"{p.pw_name} exited with {p.returncode}:\n{self.log_tail(p)}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise Fatal(EXIT_USAGE, f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")

    def wait_ready(self, timeout=15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.dataplane.poll() is not None:
                raise Fatal(EXIT_USAGE, f"pathway exited with {self.dataplane.returncode}:\n{self.log_tail(self.dataplane)}")
            try:
                status, _ = http_call(self.admin, path="/ready", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise Fatal(EXIT_USAGE, f"pathway was not ready (GET {self.admin}/ready) within {timeout:.0f}s:\n"
                                f"{self.log_tail(self.dataplane)}")

    def stop(self):
        """SIGTERM everything started (the dataplane first, so it drains against live mocks)."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


HOW_TO_START = """start one first:
  make run                 # in another terminal: mock upstreams + a dataplane on examples/standalone.yaml
  make load_test LOCAL=1   # or: the load test starts mocks and a dataplane itself (run.sh --local)
  (URL= and ADMIN=, or --url and --admin, point it at a dataplane elsewhere)"""


def admin_url(admin):
    """--admin as given ('127.0.0.1:9901' or 'http://127.0.0.1:9901') -> a URL."""
    return admin if "://" in admin else "http://" + admin


def preflight(url, service):
    """One eth_blockNumber through the dataplane: distinguishes 'nothing there' from a slow run.
    Nothing listening fails at once; a host that does not answer, within 3 s."""
    body = b'{"jsonrpc":"2.0","id":0,"method":"eth_blockNumber","params":[]}'
    try:
        status, data = http_call(url, "POST", "/v1", body, {"Content-Type": "application/json", "Target-Service-Id": service},
                            timeout=3.0)
    except OSError as e:
        raise Fatal(EXIT_UNREACHABLE, f"no dataplane answers at {url} ({e}); {HOW_TO_START}")
    if status != 200:
        print(f"warning: {service}: a first eth_blockNumber got HTTP {status}: {data[:200].decode(errors='replace')}",
              file=sys.stderr)


def connections_for(args):
    """Connections per service, and whether --rate capped them.

    With --rate R each connection should send at least every ~2 s: a connection idle for longer
    than the dataplane's keep-alive timeout (h2o's default: 10 s) is closed by it, which wrk counts
    as a read error although no request was lost. So at most max(threads, ceil(2 R)) connections."""
    conns = max(args.connections, args.threads)
    if args.rate > 0:
        cap = max(args.threads, math.ceil(args.rate * 2))
        if conns > cap:
            return cap, True
    return conns, False


def run_wrk(url, service, args, duration, connections):
    """Starts one wrk for `service`; returns the Popen (stdout piped). The caller stops it."""
    env = dict(os.environ)
    env["PW_LOAD_RATE"] = str(args.rate)
    env["PW_LOAD_THREADS"] = str(args.threads)
    cmd = ["wrk", "-t", str(args.threads), "-c", str(connections), "-d", f"{duration:g}s",
           "--timeout", args.timeout, "-s", SCRIPT, url.rstrip("/") + "/v1", "--", service]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def stop_procs(procs):
    """Terminates the wrk processes still running (an interrupted run), then waits for each."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def account(r, connections, timeout_us):
    """Adds the derived figures to one service's PWLOADTEST counters `r` (evm.lua's done()).

    - A "timeout" in wrk 4 is a response that came after --timeout: wrk counts it in `responses`
      (and evm.lua, when 2xx, in `http_ok`) but leaves it out of the latency histogram. It is a
      failed request: not OK, and when there is any, p99 is at least --timeout.
    - wrk also counts a read error when the dataplane closes an idle keep-alive connection, which
      loses no request. A read error counts as a failed request only as far as requests were sent
      and never answered (`started` - responses - write errors), beyond the one per connection that
      may still be in flight when the run stops.
    - Connect and write errors are failed attempts."""
    se = r["socket_errors"]
    started = r.get("started", r["responses"] + se["read"] + se["write"])
    unanswered = max(0, started - r["responses"] - se["write"])
    r["read_failures"] = min(se["read"], max(0, unanswered - connections))
    r["attempts"] = r["responses"] + se["connect"] + se["write"] + r["read_failures"]
    r["ok"] = max(0, r["http_ok"] - se["timeout"])
    calls = r["rpc_results"] + r["rpc_errors"]
    r["seconds"] = r["duration_us"] / 1e6
    r["rps"] = r["responses"] / r["seconds"] if r["seconds"] > 0 else 0.0
    r["http_success_pct"] = 100.0 * r["ok"] / r["attempts"] if r["attempts"] else 0.0
    r["rpc_error_pct"] = 100.0 * r["rpc_errors"] / calls if calls else 0.0
    r["p99_floored"] = False
    if se["timeout"] > 0 and r["latency_us"]["p99"] < timeout_us:
        r["latency_us"]["p99"] = int(timeout_us)  # the late responses are not in wrk's histogram
        r["p99_floored"] = True
    if se["timeout"] > 0 and r["latency_us"]["max"] < timeout_us:
        r["latency_us"]["max"] = int(timeout_us)
    return r


def collect(service, proc, connections, timeout_us):
    out, err = proc.communicate()
    m = re.search(r"^PWLOADTEST (\{.*\})$", out, re.M)
    if proc.returncode != 0 or m is None:
        raise Fatal(EXIT_UNREACHABLE if "unable to connect" in (out + err) else EXIT_USAGE,
                    f"wrk for {service} failed (exit {proc.returncode}):\n{out}{err}")
    r = json.loads(m.group(1))
    r["service"] = service
    r["connections"] = connections
    return account(r, connections, timeout_us)


def served(stats):
    """{service id: responses so far} from a /stats document (None: no /stats)."""
    if stats is None:
        return None
    return {s.get("id"): sum((s.get("responses") or {}).values()) for s in stats.get("services", [])}


def progress(procs, services, admin, before, duration, out=sys.stdout):
    """Waits for the wrk processes, printing a line about once a second: the time run, and per
    service the responses the dataplane counted since the start (its /stats) and their rate."""
    start = time.time()
    base = served(before)
    tick = start + 1.0
    last = (start, base)
    while any(p.poll() is None for p in procs):
        now = time.time()
        if now < tick:
            time.sleep(min(0.1, tick - now))
            continue
        tick += 1.0
        elapsed = now - start
        cur = served(get_stats(admin)) if base is not None else None
        line = f"  [{min(elapsed, duration):.0f}s/{duration:g}s]"
        if cur is None:
            line += f" running (no /stats at {admin}: figures at the end)"
        else:
            dt = max(now - last[0], 1e-3)
            for s in services:
                n = cur.get(s, 0) - base.get(s, 0)
                rate = (cur.get(s, 0) - last[1].get(s, 0)) / dt
                line += f"  {s} {n} responses ({rate:.0f}/s)"
            last = (now, cur)
        print(line, file=out, flush=True)


def fmt_ms(us):
    return f"{us / 1000:.2f}ms"


def report(results, args, max_p99_us):
    """Prints the per-service table; returns the list of threshold misses."""
    misses = []
    head = ["SERVICE", "REQUESTS", "REQ/S", "HTTP OK", "RPC ERR", "P50", "P95", "P99", "MAX", "RESULT"]
    rows = [head]
    for r in results:
        bad = []
        if r["http_success_pct"] < args.min_success:
            bad.append(f"HTTP success {r['http_success_pct']:.3f}% < {args.min_success}%")
        if r["latency_us"]["p99"] > max_p99_us:
            bad.append(f"p99 {fmt_ms(r['latency_us']['p99'])} > {args.max_p99}")
        if args.max_rpc_errors is not None and r["rpc_error_pct"] > args.max_rpc_errors:
            bad.append(f"JSON-RPC errors {r['rpc_error_pct']:.3f}% > {args.max_rpc_errors}%")
        if r["responses"] == 0:
            bad.append("no responses")
        misses += [f"{r['service']}: {b}" for b in bad]
        lat = r["latency_us"]
        rows.append([r["service"], str(r["responses"]), f"{r['rps']:.0f}", f"{r['http_success_pct']:.3f}%",
                     f"{r['rpc_error_pct']:.3f}%", fmt_ms(lat["p50"]), fmt_ms(lat["p95"]), fmt_ms(lat["p99"]),
                     fmt_ms(lat["max"]), "FAIL" if bad else "pass"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(c.rjust(w) if 0 < i < len(row) - 1 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    for r in results:
        extra = []
        if r["statuses"]:
            extra.append("non-2xx " + ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items())))
        se = {k: v for k, v in r["socket_errors"].items() if v and k != "timeout"}
        if se:
            extra.append("socket errors " + ", ".join(f"{k}: {v}" for k, v in se.items()))
        if r["socket_errors"]["read"]:
            extra.append(f"read errors counted as failed requests: {r['read_failures']} of {r['socket_errors']['read']} "
                         "(the rest are idle keep-alive connections the dataplane closed, no request lost)")
        if r["socket_errors"]["timeout"]:
            extra.append(f"{r['socket_errors']['timeout']} responses came after --timeout {args.timeout}: counted as failed, "
                         f"and p99 is reported as at least {args.timeout}")
        if args.rate > 0 and r["rps"] < 0.9 * args.rate:
            extra.append(f"achieved {r['rps']:.0f} req/s of the {args.rate} asked: the dataplane or --connections is the limit")
        if extra:
            print(f"  {r['service']}: " + "; ".join(extra))
    return misses


def stat_line(label, before, after, keys):
    """'label: key before -> after, ...' for the keys either side has."""
    parts = []
    for k in keys:
        b = (before or {}).get(k)
        a = (after or {}).get(k)
        if a is None and b is None:
            continue
        parts.append(f"{k} {b if b is not None else '-'} -> {a if a is not None else '-'}")
    if parts:
        print(f"  {label}: " + ", ".join(parts))


def report_stats(before, after, admin):
    print(f"\ndataplane /stats ({admin}), before -> after:")
    if after is None and before is None:
        print(f"  not available: nothing answered GET {admin}/stats (--admin sets the address)")
        return
    b, a = before or {}, after or {}
    mib = lambda d: {"rss_MiB": round(d["rss_bytes"] / 1048576, 1)} if "rss_bytes" in d else {}
    stat_line("memory", mib(b), mib(a), ["rss_MiB"])
    stat_line("limiter", b.get("limiter"), a.get("limiter"), ["max_concurrent", "inflight", "queued", "admitted", "rejected", "timeouts"])
    stat_line("upstream", b.get("upstream"), a.get("upstream"), ["idle_total", "busy"])
    stat_line("buffers", b.get("buffers"), a.get("buffers"), ["hits", "misses", "retained_bytes", "in_use"])
    svcs_b = {s.get("id"): s for s in b.get("services", [])}
    for s in a.get("services", []):
        sb = svcs_b.get(s.get("id"), {})
        stat_line(f"{s.get('id')} limiter", sb.get("limiter"), s.get("limiter"), ["max_concurrent", "inflight", "queued", "rejected", "timeouts"])
        stat_line(f"{s.get('id')} responses", sb.get("responses"), s.get("responses"), ["2xx", "4xx", "5xx"])

        def pool(svc):
            eps = svc.get("endpoints") or []
            if not eps:
                return None
            return {k: sum(e.get(k, 0) for e in eps) for k in ("open", "idle", "connects", "reuses", "connect_errors")}
        stat_line(f"{s.get('id')} pool", pool(sb) if sb else None, pool(s), ["open", "idle", "connects", "reuses", "connect_errors"])


def main(argv):
    ap = argparse.ArgumentParser(prog="tools/load_test/run.sh", description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", default="eth,poly", help="comma-separated service ids (default eth,poly)")
    ap.add_argument("--url", default="http://127.0.0.1:3069", help="the dataplane (default: examples/standalone.yaml's)")
    ap.add_argument("--admin", default=None, help="its admin listener for /stats and progress, HOST:PORT or a URL "
                    "(default 127.0.0.1:9901)")
    ap.add_argument("--duration", default="10s", help="how long each service is driven (10s, 1m)")
    ap.add_argument("--rate", type=int, default=0, help="requests/s per service; 0 = as fast as it goes")
    ap.add_argument("--connections", type=int, default=16, help="connections per service (default 16)")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads per service (default 1)")
    ap.add_argument("--timeout", default="5s", help="wrk's per-request timeout (default 5s): later is an error")
    ap.add_argument("--min-success", type=float, default=99.9, help="least HTTP success rate, percent (default 99.9)")
    ap.add_argument("--max-p99", default="1000ms", help="largest p99 latency per service (default 1000ms)")
    ap.add_argument("--max-rpc-errors", type=float, default=None, help="largest JSON-RPC error rate, percent (default: not checked)")
    ap.add_argument("--local", action="store_true", help="start mock upstreams and a dataplane from --build, stop them after")
    ap.add_argument("--build", default="build", help="build directory for --local (default build)")
    ap.add_argument("--mock-latency", type=int, default=0, help="--local: the mocks' answer delay in ms (default 0)")
    ap.add_argument("--dataplane-threads", type=int, default=1, help="--local: the dataplane's workers (default 1)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    args = ap.parse_args(argv)

    services = [s for s in args.services.split(",") if s]
    try:
        duration = parse_duration(args.duration)
        max_p99_us = parse_duration(args.max_p99) * 1e6
        timeout_us = parse_duration(args.timeout) * 1e6
    except ValueError as e:
        print(f"load_test: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not services or any(not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", s) for s in services):
        print(f"load_test: --services: comma-separated ids of [A-Za-z0-9_.-], not '{args.services}'", file=sys.stderr)
        return EXIT_USAGE
    if duration < 1 or args.rate < 0 or args.connections < 1 or args.threads < 1:
        print("load_test: --duration must be at least 1s; --rate >= 0; --connections, --threads >= 1", file=sys.stderr)
        return EXIT_USAGE
    if shutil.which("wrk") is None:
        print("load_test: wrk is not installed (apt-get install wrk; make deps installs it)", file=sys.stderr)
        return EXIT_USAGE

    connections, capped = connections_for(args)
    local = None
    procs = []
    try:
        if args.local:
            local = Local(args.build, services, args.mock_latency, args.dataplane_threads)
            url, admin = local.url, local.admin
        else:
            url, admin = args.url, admin_url(args.admin or "127.0.0.1:9901")
        mode = f"{args.rate} req/s per service" if args.rate > 0 else "as fast as it goes"
        print(f"load test: {', '.join(services)} at {url} for {duration:g}s, {mode}, "
              f"{connections} connections x {args.threads} wrk thread(s) per service"
              + (" (local mocks + dataplane)" if local else ""), flush=True)
        if capped:
            print(f"note: --connections {args.connections} capped to {connections} for --rate {args.rate} "
                  "(each connection sends at least every ~2s, so the dataplane never closes one as idle)")
        for s in services:
            preflight(url, s)
        before = get_stats(admin)
        for s in services:  # side by side; `procs` so that `finally` stops them on SIGTERM / Ctrl-C
            procs.append(run_wrk(url, s, args, duration, connections))
        progress(procs, services, admin, before, duration)
        results = []
        failure = None
        for s, p in zip(services, procs):
            try:
                results.append(collect(s, p, connections, timeout_us))
            except Fatal as e:
                failure = failure or e
        if failure:
            raise failure
        after = get_stats(admin)
        print()
        misses = report(results, args, max_p99_us)
        report_stats(before, after, admin)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"url": url, "duration_s": duration, "rate": args.rate, "results": results,
                           "stats_before": before, "stats_after": after, "misses": misses}, f, indent=2)
        if local is not None and local.dataplane.poll() is not None:
            misses.append(f"the dataplane exited during the run ({local.dataplane.returncode})")
        print()
        if misses:
            print("FAIL: " + "; ".join(misses))
            return EXIT_THRESHOLD
        print(f"PASS: every service at least {args.min_success}% HTTP success and p99 at most {args.max_p99}")
        return EXIT_OK
    except Fatal as e:
        print(f"load_test: {e}", file=sys.stderr)
        return e.code
    finally:
        stop_procs(procs)
        if local is not None:
            local.stop()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))  # run `finally`: stop what --local started
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
