#!/usr/bin/env python3
"""A fleet of a thousand: pathway-control under N simulated dataplanes (tools/fleet_sim.py).

For each fleet size it starts what it measures, runs `fleet_sim.py --bench` against it, and stops
it: one pathway-control on a fresh sqlite file, and with --postgres also a throwaway PostgreSQL
cluster (tests/integration/pg_util.py: Debian's `postgresql`, run as root) with two replicas on
one fresh database, the dataplanes spread over both and the pushes alternating between them.

The control plane's limits are set for the fleet (each dataplane holds two connections, its long
poll and its heartbeat's; see docs/benchmarks.md):

    max_connections:  2 * N + 512      max_long_polls: N + 256      max_dataplanes: N + 256
    open-file limit (ulimit -n) of the process: max_connections + 256

usage: tools/bench/fleet.py [--build-dir build] [-n 1000 -n 3000] [--postgres] [--pushes 10]
                            [--json results.json]
Everything listens on 127.0.0.1; everything started is stopped. Exit 1 when a run failed (the
fleet did not sync, a push was not ACKed by all, the control plane died)."""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, "..", ".."))
SIM = os.path.join(SOURCE, "tools", "fleet_sim.py")
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))

ADMIN = "bench-admin-token-0123456789abcdef0123"
DATAPLANE = "bench-dataplane-token-0123456789abcdef"
procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthz(port, proc, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"pathway-control exited with {proc.returncode} at start")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"pathway-control on port {port} not healthy after {timeout}s")


def limits(n):
    conns = 2 * n + 512
    return {"max_connections": conns, "max_long_polls": n + 256, "max_dataplanes": n + 256, "nofile": conns + 256}


def start_control(build, workdir, name, database, n):
    """One pathway-control with limits for n dataplanes; returns (process, port, log path)."""
    lim = limits(n)
    port = free_port()
    os.makedirs(workdir, exist_ok=True)
    for fname, tok in (("admin.token", ADMIN), ("dataplane.token", DATAPLANE)):
        with open(os.path.join(workdir, fname), "w") as f:
            f.write(tok + "\n")
        os.chmod(os.path.join(workdir, fname), 0o600)
    conf = os.path.join(workdir, f"{name}.yaml")
    with open(conf, "w") as f:
        f.write(f"listen: 127.0.0.1:{port}\n"
                f"database: {database}\n"
                f"heartbeat_timeout: 30s\n"
                f"max_wait: 5m\n"
                f"max_connections: {lim['max_connections']}\n"
                f"max_long_polls: {lim['max_long_polls']}\n"
                f"max_dataplanes: {lim['max_dataplanes']}\n"
                f"log_level: warn\n"
                "tokens:\n"
                "  - {name: ops, role: admin, file: admin.token}\n"
                "  - {name: fleet, role: dataplane, file: dataplane.token}\n")
    log = os.path.join(workdir, f"{name}.log")

    def nofile():
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        want = lim["nofile"] if hard == resource.RLIM_INFINITY else min(lim["nofile"], hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    binary = os.path.join(build, "controlplane", "pathway-control")
    p = subprocess.Popen([binary, "-c", conf], stdout=open(log, "w"), stderr=subprocess.STDOUT, preexec_fn=nofile,
                         start_new_session=True)
    procs.append(p)
    wait_healthz(port, p)
    return p, port, log


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in procs:
        procs.remove(p)


def run_sim(urls, pids, n, args, out_json, tree_pids=()):
    cmd = [sys.executable, SIM, "--bench", "-n", str(n), "--admin-token", ADMIN, "--token", DATAPLANE, "--pushes",
           str(args.pushes), "--interval", str(args.interval), "--steady", str(args.steady), "--json", out_json]
    for u in urls:
        cmd += ["--url", u]
    for pid in pids:
        cmd += ["--pid", str(pid)]
    for pid in tree_pids:
        cmd += ["--tree-pid", str(pid)]
    print("$ " + " ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    with open(out_json) as f:
        r = json.load(f)
    r["sim_exit"] = rc
    return r


def tail(path, n=2000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def one_run(label, build, workdir, databases, n, args, tree_pids=()):
    """Replicas on the given databases (one per replica), the simulator against all of them."""
    started = []
    try:
        for i, db in enumerate(databases):
            started.append(start_control(build, workdir, f"cp{i}", db, n))
        urls = [f"http://127.0.0.1:{port}" for _, port, _ in started]
        r = run_sim(urls, [p.pid for p, _, _ in started], n, args, os.path.join(workdir, f"{label}-{n}.json"), tree_pids)
        r["store"] = label
        r["limits"] = limits(n)
        for p, _, log in started:
            if p.poll() is not None:
                r["ok"] = False
                r["failure"] = f"pathway-control exited with {p.returncode} during the run:\n{tail(log)}"
        warn = "".join(tail(log, 1500) for _, _, log in started)
        if warn.strip():
            r["control_plane_log_tail"] = warn
        return r
    finally:
        for p, _, _ in started:
            stop(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(SOURCE, "build"))
    ap.add_argument("-n", type=int, action="append", help="fleet sizes (default 1000 and 3000)")
    ap.add_argument("--postgres", action="store_true", help="also two replicas on a throwaway PostgreSQL cluster")
    ap.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    ap.add_argument("--pushes", type=int, default=10)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--steady", type=float, default=10.0)
    ap.add_argument("--json", help="write every run's result here")
    ap.add_argument("--db-dir", help="where the sqlite files go (default: a temporary directory; /dev/shm shows what "
                                     "the disk's fsyncs cost)")
    args = ap.parse_args()
    sizes = args.n or [1000, 3000]
    build = os.path.abspath(args.build_dir)
    if not os.path.exists(os.path.join(build, "controlplane", "pathway-control")):
        sys.exit(f"fleet.py: no controlplane/pathway-control under {build} (make build)")
    work = tempfile.mkdtemp(prefix="pw-fleet-bench-")
    results = []
    cluster = None
    try:
        if args.postgres:
            import pg_util
            why = pg_util.why_no_pg()
            if why:
                sys.exit(f"fleet.py: --postgres: {why}")
            cluster = pg_util.Cluster(dbname="pathway")
        for n in sizes:
            if not args.no_sqlite:
                db = os.path.join(os.path.abspath(args.db_dir), f"pw-fleet-{os.getpid()}-{n}.db") if args.db_dir else "pathway.db"
                try:
                    results.append(one_run("sqlite", build, os.path.join(work, f"sqlite-{n}"), [db], n, args))
                finally:
                    if args.db_dir:
                        for suffix in ("", "-wal", "-shm"):
                            try:
                                os.unlink(db + suffix)
                            except OSError:
                                pass
            if cluster is not None:
                db = f"fleet{n}"
                cluster.psql(f'CREATE DATABASE "{db}"', db="postgres")
                url = f"postgres://postgres@127.0.0.1:{cluster.port}/{db}"
                with open(os.path.join(cluster.data, "postmaster.pid")) as f:
                    postmaster = int(f.readline())
                results.append(one_run("postgres", build, os.path.join(work, f"pg-{n}"), [url, url], n, args, [postmaster]))
    finally:
        for p in list(procs):
            stop(p)
        if cluster is not None:
            cluster.destroy()
        if not os.environ.get("PW_KEEP_TMP"):
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print()
    print("store     replicas      N  sync s  receive p99  ACK p50  ACK p99  ACK max  admin p99 quiet/push  RSS/dp KiB"
          "  CPU quiet µs/s/dp  CPU/push µs/dp  load at start")
    for r in results:
        rss = [v["rss_bytes_per_dataplane"] / 1024 for k, v in r.get("per_dataplane", {}).items() if not k.startswith("tree:")]
        steady = (r.get("steady") or {}).get("cpu_s", {})
        cpu = sum(v for k, v in steady.items() if v is not None and not k.startswith("tree:"))
        dbcpu = sum(v for k, v in steady.items() if v is not None and k.startswith("tree:"))
        secs = (r.get("steady") or {}).get("seconds") or 1
        a = r.get("admin") or {}
        admin = f"{a.get('quiet', {}).get('p99')}/{a.get('during_push', {}).get('p99')}"
        ack = r.get("ack_pooled") or {}
        print(f"{r['store']:9} {len(r['urls']):8} {r['n']:6} {r.get('sync_s')!s:>7} {(r.get('receive_pooled') or {}).get('p99')!s:>12} "
              f"{ack.get('p50')!s:>8} {ack.get('p99')!s:>8} {ack.get('max')!s:>8} {admin:>20} "
              f"{'+'.join(f'{x:.1f}' for x in rss):>11} {1e6 * cpu / secs / r['n']:18.1f} "
              f"{r.get('cp_cpu_us_per_dataplane_per_push')!s:>15}  {r.get('loadavg_start')}")
        if any(k.startswith("tree:") for k in steady):
            print(f"  PostgreSQL (all its processes): CPU quiet {1e6 * dbcpu / secs / r['n']:.1f} µs/s per dataplane, "
                  f"CPU per push {r.get('db_cpu_us_per_dataplane_per_push')} µs per dataplane")
        if not r.get("ok", True):
            print(f"  FAILED: {r.get('failure')}")
    return 0 if all(r.get("ok", True) and r.get("sim_exit") == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
