#!/usr/bin/env python3
"""Pathway vs nginx vs haproxy, side by side (DESIGN §5).

One worker each, the same upstream (nginx `return 200` with a small JSON-RPC body, one worker),
wrk POST of a ~90-byte JSON-RPC body over 64 connections on loopback, rounds interleaved so
drift on a shared machine hits every proxy alike. For each proxy: relays/s, p50/p99, proxy CPU per
relay (utime+stime from /proc/<pid>/stat over the round / requests), peak RSS (VmHWM). Then
Pathway over h2c (h2load) against nginx over h2c, and Pathway's heap allocations per relay in
steady state (valgrind's malloc count at two request counts, differenced). Then Pathway to an
HTTP/2 upstream (pool.protocol h2) beside HTTP/1.1 with max_conns_per_host 2, and against a TLS
upstream: relays/s, CPU per relay, upstream connections.

usage: tools/bench/run.sh <builddir> [--rounds N] [--seconds S] [--no-valgrind] [--only-h2]
Everything listens on 127.0.0.1; everything started is stopped."""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BODY = '{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x407d73d8a49eeb85d32c","latest"]}'
ANSWER = '{"jsonrpc":"2.0","id":1,"result":"0x10d4f"}'
CLK = os.sysconf("SC_CLK_TCK")
# With 2 cores and 3 busy processes (load, upstream, proxy), where the scheduler puts them decides
# the throughput more than the proxy does. The proxy gets core 0 to itself; wrk and the upstream
# share core 1. Every proxy is measured the same way.
PIN = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
PROXY_CPU = ["taskset", "-c", "0"] if PIN else []
LOAD_CPU = ["taskset", "-c", "1"] if PIN else []
procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing on port {port}")


def start(args, log):
    p = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    procs.append(p)
    return p


def stop_all():
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def tree_pids(pid):
    """pid and its descendants (nginx: master + worker)."""
    out = [pid]
    try:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    except OSError:
        kids = []
    for k in kids:
        out += tree_pids(int(k))
    return out


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total


def hwm_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def to_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v


def wrk(url, seconds, lua):
    r = subprocess.run(LOAD_CPU + ["wrk", "-t1", "-c64", f"-d{seconds}s", "--latency", "-s", lua, url], capture_output=True, text=True,
                       timeout=seconds + 30)
    out = r.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(non2xx.group(1)) if non2xx else 0
    errs = re.search(r"Socket errors: (.*)", out)
    sock = {k: int(v) for k, v in re.findall(r"(connect|read|write|timeout) (\d+)", errs.group(1))} if errs else {}
    # relays/s counts good relays only: wrk's Requests/sec includes non-2xx answers and late ones
    # ("timeout": a response after --timeout); connect/read/write errors are failed relays too
    good = max(0, total - non2xx - sock.get("timeout", 0))
    failed = non2xx + sum(sock.values())
    return {"rps": rps * good / total if total else 0.0, "total": total, "p50": p50, "p99": p99, "non2xx": non2xx,
            "failed": failed, "errors": errs.group(1) if errs else ""}


def measure(name, url, pids, seconds, lua):
    c0 = cpu_ticks(pids)
    r = wrk(url, seconds, lua)
    c1 = cpu_ticks(pids)
    r["cpu_us"] = (c1 - c0) / CLK * 1e6 / max(r["total"], 1)
    r["hwm"] = hwm_kib(pids)
    return r


def haproxy_conf(port, up):
    """haproxy as the bench runs it: one thread, keep-alive to the upstream on 127.0.0.1:up."""
    return f"""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
  bind 127.0.0.1:{port}
  default_backend b
backend b
  server s1 127.0.0.1:{up} maxconn 1000
"""


def upstream_h2_rows(d, pathway, nginx, seconds, lua):
    """Pathway to an HTTP/2 upstream (pool.protocol h2) beside the same over HTTP/1.1, both with
    max_conns_per_host: 2, HTTP/1.1 with a connection per concurrent request (64) for the CPU per
    relay, then the same against a TLS upstream (h1 with a connection per
    concurrent request, h2 with 2): relays/s, Pathway's CPU per relay, upstream connections opened.
    The upstream is nginx `return 200` listening plain (h1), plain http2 (prior knowledge) and TLS
    with http2 (ALPN)."""
    h = os.path.join(d, "h2up")
    os.makedirs(h, exist_ok=True)
    cert, key = os.path.join(h, "cert.pem"), os.path.join(h, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True,
                   timeout=60)
    # one port per service: the per-upstream connection bound is shared by endpoints of one host:port
    up1, up64, up2, upt, uptt, port, admin = (free_port() for _ in range(7))
    with open(os.path.join(h, "up.conf"), "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {h}/up.pid; error_log {h}/up-error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {h}; keepalive_requests 1000000; http2_max_concurrent_streams 128;
  server {{ listen 127.0.0.1:{up1}; listen 127.0.0.1:{up64}; listen 127.0.0.1:{up2} http2;
    listen 127.0.0.1:{upt} ssl http2; listen 127.0.0.1:{uptt} ssl http2;
    ssl_certificate {cert}; ssl_certificate_key {key};
    location / {{ default_type application/json; return 200 '{ANSWER}'; }} }} }}
""")
    tls = f"tls: {{ca_file: '{cert}'}}"
    with open(os.path.join(h, "pathway.yaml"), "w") as f:
        f.write(f"""listen:
  - address: 127.0.0.1:{port}
admin:
  address: 127.0.0.1:{admin}
threads: 1
log:
  level: warn
limiter:
  max_concurrent: 1000
services:
  - id: h1
    endpoints: [{{url: 'http://127.0.0.1:{up1}/'}}]
    pool: {{max_conns_per_host: 2, max_idle_per_host: 2}}
  - id: h1-64
    endpoints: [{{url: 'http://127.0.0.1:{up64}/'}}]
    pool: {{max_conns_per_host: 64, max_idle_per_host: 64}}
  - id: h2
    endpoints: [{{url: 'http://127.0.0.1:{up2}/'}}]
    pool: {{max_conns_per_host: 2, max_idle_per_host: 2, protocol: h2}}
  - id: tls-h1
    endpoints: [{{url: 'https://127.0.0.1:{upt}/', {tls}}}]
    pool: {{max_conns_per_host: 64, max_idle_per_host: 64}}
  - id: tls-h2
    endpoints: [{{url: 'https://127.0.0.1:{uptt}/', {tls}}}]
    pool: {{max_conns_per_host: 2, max_idle_per_host: 2, protocol: h2}}
""")
    rows = []
    n0 = len(procs)
    try:
        start(LOAD_CPU + [nginx, "-c", os.path.join(h, "up.conf"), "-p", h], os.path.join(h, "up.log"))
        pw = start(PROXY_CPU + [pathway, "-c", os.path.join(h, "pathway.yaml")], os.path.join(h, "pathway.log"))
        for p in (up1, up64, up2, upt, uptt, port):
            wait_port(p)
        import json
        for sid in ("h1", "h2", "h1-64", "tls-h1", "tls-h2"):
            url = f"http://127.0.0.1:{port}/v1/{sid}"
            wrk(url, 1, lua)
            r = measure(sid, url, [pw.pid], seconds, lua)
            st = json.loads(subprocess.run(["curl", "-s", f"http://127.0.0.1:{admin}/stats"], capture_output=True,
                                           text=True).stdout)
            ep = next(s for s in st["services"] if s["id"] == sid)["endpoints"][0]
            rows.append((sid, r, ep["connects"], ep.get("protocol_in_use")))
    finally:
        for p in procs[n0:]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)
        del procs[n0:]
    print(f"\n## Upstream HTTP/2 (wrk -t1 -c64, {seconds}s each; nginx `return 200` upstream; Pathway pinned as above)\n")
    print("| service | upstream | protocol in use | max_conns_per_host | relays/s | p50 ms | p99 ms | Pathway CPU µs/relay | upstream connections opened | non-2xx |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    conns = {"h1": 2, "h2": 2, "h1-64": 64, "tls-h1": 64, "tls-h2": 2}
    for sid, r, connects, proto in rows:
        kind = "TLS" if sid.startswith("tls") else "plain"
        print(f"| {sid} | {kind} | {proto} | {conns[sid]} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['cpu_us']:.2f} | {connects} "
              f"| {r['non2xx']} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--no-valgrind", action="store_true")
    ap.add_argument("--only-h2", action="store_true", help="only the upstream HTTP/2 rows")
    a = ap.parse_args()
    pathway = os.path.join(a.build, "dataplane", "pathway")
    for tool in ["wrk", "nginx", "haproxy"]:
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"bench: {tool} is not installed (scripts/install-deps.sh)")
    if not os.path.exists(pathway):
        sys.exit(f"bench: {pathway} is not built")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    d = tempfile.mkdtemp(prefix="pw-bench-")
    lua = os.path.join(d, "post.lua")
    with open(lua, "w") as f:
        f.write(f"wrk.method = 'POST'\nwrk.body = '{BODY}'\nwrk.headers['Content-Type'] = 'application/json'\n")
    with open(os.path.join(d, "body.json"), "w") as f:
        f.write(BODY)
    if a.only_h2:
        upstream_h2_rows(d, pathway, nginx, a.seconds, lua)
        return

    up, pw_port, pw_admin, ngx_port, ngx_h2c, hap_port = (free_port() for _ in range(6))
    # the upstream: nginx, one worker, `return 200`
    os.makedirs(os.path.join(d, "up"), exist_ok=True)
    with open(os.path.join(d, "up.conf"), "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {d}/up.pid; error_log {d}/up-error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {d}/up; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{up} reuseport backlog=4096;
    location / {{ default_type application/json; return 200 '{ANSWER}'; }} }} }}
""")
    start(LOAD_CPU + [nginx, "-c", os.path.join(d, "up.conf"), "-p", d], os.path.join(d, "up.log"))
    # nginx as the proxy
    with open(os.path.join(d, "proxy.conf"), "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {d}/proxy.pid; error_log {d}/proxy-error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {d}/up; proxy_temp_path {d}/up; keepalive_requests 1000000;
  upstream u {{ server 127.0.0.1:{up}; keepalive 64; }}
  server {{ listen 127.0.0.1:{ngx_port}; listen 127.0.0.1:{ngx_h2c} http2;
    location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
    # haproxy
    with open(os.path.join(d, "haproxy.cfg"), "w") as f:
        f.write(haproxy_conf(hap_port, up))
    with open(os.path.join(d, "pathway.yaml"), "w") as f:
        f.write(f"""listen:
  - address: 127.0.0.1:{pw_port}
admin:
  address: 127.0.0.1:{pw_admin}
threads: 1
log:
  level: warn
limiter:
  max_concurrent: 1000
defaults:
  pool: {{max_idle_per_host: 128, max_conns_per_host: 256}}
services:
  - id: eth
    endpoints:
      - url: http://127.0.0.1:{up}/
  - id: eth-cached
    endpoints:
      - url: http://127.0.0.1:{up}/
    cache: {{enabled: true, ttl: {{realtime: 1h}}}}
""")
    try:
        wait_port(up)
        ngx = start(PROXY_CPU + [nginx, "-c", os.path.join(d, "proxy.conf"), "-p", d], os.path.join(d, "proxy.log"))
        hap = start(PROXY_CPU + [haproxy, "-f", os.path.join(d, "haproxy.cfg")], os.path.join(d, "haproxy.log"))
        pw = start(PROXY_CPU + [pathway, "-c", os.path.join(d, "pathway.yaml")], os.path.join(d, "pathway.log"))
        for p in (ngx_port, hap_port, pw_port):
            try:
                wait_port(p)
            except RuntimeError:
                for log in ("proxy.log", "proxy-error.log", "haproxy.log", "pathway.log", "up-error.log"):
                    path = os.path.join(d, log)
                    if os.path.exists(path):
                        print(f"--- {log}\n" + open(path).read()[-2000:], file=sys.stderr)
                raise
        time.sleep(0.5)
        targets = {
            "direct": (f"http://127.0.0.1:{up}/", tree_pids(procs[0].pid)),
            "pathway": (f"http://127.0.0.1:{pw_port}/v1/eth", [pw.pid]),
            "nginx": (f"http://127.0.0.1:{ngx_port}/", tree_pids(ngx.pid)),
            "haproxy": (f"http://127.0.0.1:{hap_port}/", tree_pids(hap.pid)),
            # the same request answered from Pathway's response cache (a service with cache.enabled)
            "pathway cache hit": (f"http://127.0.0.1:{pw_port}/v1/eth-cached", [pw.pid]),
        }
        for name, (url, _) in targets.items():  # warm-up: pools filled, caches warm
            wrk(url, 1, lua)
        results = {n: [] for n in targets}
        for rnd in range(a.rounds):
            for name, (url, pids) in targets.items():
                results[name].append(measure(name, url, pids, a.seconds, lua))
        h2 = {}
        if shutil.which("h2load"):
            for name, url in (("pathway", f"http://127.0.0.1:{pw_port}/v1/eth"), ("nginx", f"http://127.0.0.1:{ngx_h2c}/")):
                r = subprocess.run(LOAD_CPU + ["h2load", "-c", "64", "-m", "1", "-D", str(a.seconds), "-t", "1", "-d",
                                    os.path.join(d, "body.json"), "-H", "content-type: application/json", url],
                                   capture_output=True, text=True, timeout=a.seconds + 60)
                m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", r.stdout)
                ok = re.search(r"requests: .* (\d+) succeeded, (\d+) failed", r.stdout)
                h2[name] = (float(m.group(1)) if m else 0.0, ok.group(0) if ok else r.stdout[-300:])
        pw_stats = subprocess.run(["curl", "-s", f"http://127.0.0.1:{pw_admin}/stats"], capture_output=True, text=True).stdout
    finally:
        stop_all()

    def med(rs, k):
        v = sorted(r[k] for r in rs)
        return v[len(v) // 2]

    print(f"\n## {a.rounds} interleaved rounds of {a.seconds}s, wrk -t1 -c64, POST {len(BODY)}-byte JSON-RPC body "
          f"(median of rounds)" + ("; proxy pinned to core 0, wrk and upstream to core 1" if PIN else "") + "\n")
    print("| | relays/s | ratio to direct | p50 ms | p99 ms | proxy CPU µs/relay | peak RSS MiB | non-2xx |")
    print("|---|---|---|---|---|---|---|---|")
    direct = med(results["direct"], "rps")
    for name, rs in results.items():
        cpu = "(upstream %.1f)" % med(rs, "cpu_us") if name == "direct" else "%.2f" % med(rs, "cpu_us")
        print(f"| {name} | {med(rs, 'rps'):.0f} | {med(rs, 'rps') / direct:.2f} | {med(rs, 'p50'):.2f} | {med(rs, 'p99'):.2f} "
              f"| {cpu} | {max(r['hwm'] for r in rs) / 1024:.1f} | {sum(r['non2xx'] for r in rs)} |")
    for name, rs in results.items():  # relays/s above count 2xx answers in time only
        if any(r["errors"] for r in rs):
            print(f"\n{name}: wrk socket errors (failed relays, not in relays/s): " + "; ".join(r["errors"] for r in rs if r["errors"]))
    print("\nPathway's ratios:")
    for peer in ("nginx", "haproxy"):
        print(f"- vs {peer}: relays/s x{med(results['pathway'], 'rps') / med(results[peer], 'rps'):.2f}, "
              f"CPU/relay x{med(results['pathway'], 'cpu_us') / med(results[peer], 'cpu_us'):.2f}, "
              f"p99 x{med(results['pathway'], 'p99') / med(results[peer], 'p99'):.2f}")
    for name, rs in results.items():
        print(f"  {name} rounds: " + ", ".join(f"{r['rps']:.0f}/s cpu {r['cpu_us']:.2f}us p99 {r['p99']:.2f}ms" for r in rs))
    if "pathway cache hit" in results:
        print(f"- cache hit vs uncached relay: relays/s x{med(results['pathway cache hit'], 'rps') / med(results['pathway'], 'rps'):.2f}, "
              f"CPU/request x{med(results['pathway cache hit'], 'cpu_us') / med(results['pathway'], 'cpu_us'):.2f}")
    if h2:
        print("\nh2c (h2load -c64 -m1, %ds):" % a.seconds)
        for name, (rps, detail) in h2.items():
            print(f"- {name}: {rps:.0f} req/s ({detail.strip()})")
        if h2.get("nginx", (0,))[0]:
            print(f"- Pathway / nginx over h2c: x{h2['pathway'][0] / h2['nginx'][0]:.2f}")
    try:
        import json
        s = json.loads(pw_stats)
        print(f"\nPathway buffer pool: {s['buffers']['hits']} hits, {s['buffers']['misses']} misses; upstream connects "
              f"{s['services'][0]['endpoints'][0]['connects']}, reuses {s['services'][0]['endpoints'][0]['reuses']}")
    except (ValueError, KeyError, IndexError):
        pass

    upstream_h2_rows(d, pathway, nginx, a.seconds, lua)

    if not a.no_valgrind and shutil.which("valgrind") and shutil.which("h2load"):
        print("\nHeap allocations per relay in steady state (valgrind memcheck, malloc calls at two request counts):")
        counts = {}
        for n in (2000, 12000):
            port, admin = free_port(), free_port()
            cfg = os.path.join(d, f"vg-{n}.yaml")
            with open(os.path.join(d, "pathway.yaml")) as f:
                text = f.read().replace(f"127.0.0.1:{pw_port}", f"127.0.0.1:{port}").replace(f"127.0.0.1:{pw_admin}",
                                                                                                f"127.0.0.1:{admin}")
            with open(cfg, "w") as f:
                f.write(text)
            procs.clear()
            upp = start([nginx, "-c", os.path.join(d, "up.conf"), "-p", d], os.path.join(d, "up2.log"))
            log = os.path.join(d, f"vg-{n}.log")
            vg = start(["valgrind", "--tool=memcheck", "--leak-check=no", f"--log-file={log}", pathway, "-c", cfg],
                       os.path.join(d, f"vg-{n}.out"))
            try:
                wait_port(up)
                wait_port(port, 60)
                subprocess.run(["h2load", "--h1", "-n", str(n), "-c", "8", "-t", "1", "-d", os.path.join(d, "body.json"),
                                f"http://127.0.0.1:{port}/v1/eth"], capture_output=True, timeout=300)
            finally:
                os.killpg(vg.pid, signal.SIGTERM)
                vg.wait(60)
                os.killpg(upp.pid, signal.SIGTERM)
                upp.wait(10)
            with open(log) as f:
                m = re.search(r"total heap usage: ([\d,]+) allocs", f.read())
            counts[n] = int(m.group(1).replace(",", "")) if m else None
        if None not in counts.values():
            per = (counts[12000] - counts[2000]) / 10000
            print(f"- {counts[2000]} allocs after 2000 relays, {counts[12000]} after 12000: {per:.2f} allocations per relay")
        else:
            print(f"- valgrind gave no count: {counts}")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
