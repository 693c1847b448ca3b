#!/usr/bin/env python3
"""Instructions per relay, from callgrind: a count that does not move with machine noise.

Each proxy runs under `valgrind --tool=callgrind` in front of the same nginx `return 200` upstream;
h2load sends N1 and then (in a fresh process) N2 HTTP/1.1 POSTs of the bench body over 8
connections; (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of one relay in steady state, start-up and
first connections cancelled out. Pathway can be measured with extra config (a YAML fragment merged
into the service) to show what a feature on the relay path costs.

usage: tools/bench/callgrind.py <builddir> [--peers] [--n1 2000] [--n2 12000] [--h2]
                                 [--variant NAME=YAML-of-service-keys ...] [--pathway-bin PATH ...]
--h2 adds a row for Pathway relaying to the same upstream over HTTP/2 (pool.protocol h2, prior
knowledge to an nginx `listen ... http2` port of the upstream).
Everything listens on 127.0.0.1; everything started is stopped."""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import ANSWER, BODY, free_port, haproxy_conf, wait_port  # noqa: E402  (one home for the bench's pieces)


def start(args, log):
    return subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def total_ir(out):
    """The Ir total of a callgrind output file (the 'totals:' or 'summary:' line)."""
    with open(out) as f:
        for line in f:
            m = re.match(r"(?:totals|summary):\s+(\d+)", line)
            if m:
                return int(m.group(1))
    raise RuntimeError(f"no totals in {out}")


def run_once(d, tag, argv, port, url, n):
    out = os.path.join(d, f"cg-{tag}-{n}.out")
    p = start(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + argv, os.path.join(d, f"cg-{tag}-{n}.log"))
    try:
        wait_port(port, 60)  # valgrind starts slowly
        r = subprocess.run(["h2load", "--h1", "-n", str(n), "-c", "8", "-t", "1", "-d", os.path.join(d, "body.json"), "-H",
                            "content-type: application/json", url], capture_output=True, text=True, timeout=600)
        ok = re.search(r"(\d+) succeeded, (\d+) failed", r.stdout)
        if not ok or int(ok.group(1)) != n:
            raise RuntimeError(f"{tag}: not every request succeeded: {r.stdout[-400:]}")
    finally:
        stop(p)
    return total_ir(out)


def per_relay(d, tag, argv_for, url_for, n1, n2):
    counts = []
    for n in (n1, n2):
        port = free_port()
        counts.append(run_once(d, tag, argv_for(port, n), port, url_for(port), n))
    return (counts[1] - counts[0]) / (n2 - n1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--peers", action="store_true", help="measure nginx and haproxy too")
    ap.add_argument("--n1", type=int, default=2000)
    ap.add_argument("--n2", type=int, default=12000)
    ap.add_argument("--variant", action="append", default=[], help="NAME=YAML keys added to the service")
    ap.add_argument("--pathway-bin", action="append", default=[], help="other pathway binaries to compare (A/B)")
    ap.add_argument("--h2", action="store_true", help="a row with the upstream over HTTP/2 (pool.protocol h2)")
    a = ap.parse_args()
    for tool in ("valgrind", "h2load", "nginx"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"callgrind: {tool} is not installed (scripts/install-deps.sh)")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    d = tempfile.mkdtemp(prefix="pw-cg-")
    with open(os.path.join(d, "body.json"), "w") as f:
        f.write(BODY)
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    up, up_h2 = free_port(), free_port()
    with open(os.path.join(d, "up.conf"), "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {d}/up.pid; error_log {d}/up-error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {d}/tmp; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{up} reuseport backlog=4096; listen 127.0.0.1:{up_h2} http2;
    location / {{ default_type application/json; return 200 '{ANSWER}'; }} }} }}
""")
    upstream = start([nginx, "-c", os.path.join(d, "up.conf"), "-p", d], os.path.join(d, "up.log"))
    results = []
    try:
        wait_port(up)

        def pathway(binary, extra, tag, upstream_url=None):
            def argv(port, n):
                cfg = os.path.join(d, f"pw-{tag}-{n}.yaml")
                with open(cfg, "w") as f:
                    f.write(f"""listen: [{{address: '127.0.0.1:{port}'}}]
admin: {{address: '127.0.0.1:{free_port()}'}}
threads: 1
log: {{level: warn}}
limiter: {{max_concurrent: 1000}}
defaults:
  pool: {{max_idle_per_host: 128, max_conns_per_host: 256}}
services:
  - id: eth
    endpoints: [{{url: '{upstream_url or f"http://127.0.0.1:{up}/"}'}}]
""" + "".join(f"    {line}\n" for line in extra.splitlines()))
                return [binary, "-c", cfg]
            return per_relay(d, tag, argv, lambda port: f"http://127.0.0.1:{port}/v1/eth", a.n1, a.n2)

        main_bin = os.path.join(a.build, "dataplane", "pathway")
        results.append(("pathway", pathway(main_bin, "", "pw")))
        for i, b in enumerate(a.pathway_bin):
            results.append((f"pathway ({b})", pathway(b, "", f"alt{i}")))
        if a.h2:
            results.append(("pathway, upstream over HTTP/2", pathway(main_bin, "pool: {protocol: h2}", "h2",
                                                                     f"http://127.0.0.1:{up_h2}/")))
        for v in a.variant:
            name, _, extra = v.partition("=")
            results.append((f"pathway + {name}", pathway(main_bin, extra.replace("\\n", "\n"), f"v-{name}")))
        if a.peers:
            def nginx_argv(port, n):
                conf = os.path.join(d, f"ngx-{n}.conf")
                with open(conf, "w") as f:
                    f.write(f"""worker_processes 1; daemon off; master_process off; pid {d}/ngx-{n}.pid;
error_log {d}/ngx-error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; keepalive_requests 1000000;
  upstream u {{ server 127.0.0.1:{up}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
                return [nginx, "-c", conf, "-p", d]
            results.append(("nginx", per_relay(d, "nginx", nginx_argv, lambda port: f"http://127.0.0.1:{port}/", a.n1, a.n2)))

            def haproxy_argv(port, n):
                conf = os.path.join(d, f"hap-{n}.cfg")
                with open(conf, "w") as f:
                    f.write(haproxy_conf(port, up))
                return [haproxy, "-db", "-f", conf]
            results.append(("haproxy", per_relay(d, "haproxy", haproxy_argv, lambda port: f"http://127.0.0.1:{port}/", a.n1, a.n2)))
    finally:
        stop(upstream)
    print(f"\n## Instructions per relay (callgrind Ir, ({a.n2} - {a.n1}) relays differenced, h2load --h1 -c 8)\n")
    print("| | instructions per relay | ratio to pathway |")
    print("|---|---|---|")
    base = results[0][1]
    for name, ir in results:
        print(f"| {name} | {ir:.0f} | {ir / base:.3f} |")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
