#!/usr/bin/env python3
"""A fleet of simulated dataplanes against one or more pathway-control replicas.

Each simulated dataplane makes the calls a real managed dataplane makes (dataplane/dp_cpclient.c),
through the same API, on HTTP/1.1 keep-alive connections:

  * its poll connection: `GET /v1/dataplanes/{id}/config?version=<seen>&wait=<poll_wait>&labels=…`,
    and when a new version arrives, the ACK `POST /v1/dataplanes/{id}/status` on the same
    connection (the real client sends it from its poll thread, on that thread's connection);
  * its heartbeat connection: the same report every `--heartbeat` with live `stats` (requests,
    5xx, RSS, the running document's hash, endpoint health) and the rollout evidence `traffic`.

That is two connections per dataplane, as the real client holds (one curl handle per thread). All
of them live in one asyncio event loop: no thread per dataplane. The dataplanes are spread
round-robin over the `--url`s given (replicas).

Modes:
  run (default)  connect the fleet and keep it connected for --duration seconds, printing progress.
  --bench        connect the fleet, wait until every dataplane ACKed the active version, measure a
                 quiet period, then make --pushes PUT /v1/config (admin token), --interval apart,
                 measuring for each the time from the PUT's answer to every dataplane's receipt
                 and ACK; meanwhile admin calls (GET /v1/versions, GET /v1/dataplanes?limit=100)
                 are timed from a separate process at --admin-rate per second, and the control
                 plane's RSS and CPU are read from /proc for each --pid. Prints a summary, and
                 writes it as JSON with --json FILE (`-` = stdout).

Standard library only. Exit status: 0 when the run or benchmark completed, 1 when the fleet did
not sync or a push was not ACKed by every dataplane within --ack-timeout, 2 for a usage error.
"""

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import random
import resource
import sys
import time
import urllib.parse

BUCKETS = 14  # the latency histogram of heartbeats' traffic: 1, 2, 5, ... 10000 ms and +Inf
BACKOFF_MIN = 0.2
BACKOFF_MAX = 10.0
MIN_POLL = 1.0  # a poll answered sooner than this without news waits out the rest (as the real client)


TIMEOUT = getattr(asyncio, "timeout", None)


def now():
    return time.monotonic()


class HttpError(Exception):
    pass


class ClosedIdle(HttpError):
    """The server closed the connection before any byte of the answer: on a reused keep-alive
    connection that is the server's idle timeout, and the request is sent again on a new one (as
    libcurl does)."""


class Conn:
    """One HTTP/1.1 keep-alive connection to host:port, reopened when the server closes it."""

    __slots__ = ("host", "port", "reader", "writer", "opened")

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None
        self.opened = 0  # connections opened over the run (reconnects show here)

    def close(self):
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:
                pass
        self.reader = self.writer = None

    async def request(self, head, body=b"", timeout=15.0):
        """Sends head (request line and headers, bytes, ending in CRLFCRLF) and body; returns
        (status, headers lower-cased, body bytes). Raises OSError/HttpError/TimeoutError."""
        if self.writer is not None and self.reader.at_eof():
            self.close()
        for attempt in (0, 1):
            reused = self.writer is not None
            if not reused:
                self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 5.0)
                self.opened += 1
            try:
                self.writer.write(head + body if body else head)
                if TIMEOUT is not None:  # asyncio.timeout (3.11) costs no task per request, wait_for does
                    async with TIMEOUT(timeout):
                        return await self._response()
                return await asyncio.wait_for(self._response(), timeout)
            except (ClosedIdle, ConnectionResetError, BrokenPipeError):
                self.close()
                if not reused or attempt == 1:
                    raise
            except BaseException:
                self.close()
                raise

    async def _response(self):
        r = self.reader
        try:
            head = await r.readuntil(b"\r\n\r\n")  # one await for the status line and headers
        except asyncio.IncompleteReadError as e:
            if not e.partial:
                raise ClosedIdle("connection closed by the server") from None
            raise HttpError("connection closed in the headers") from None
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"bad status line {lines[0][:80]!r}")
        status = int(parts[1])
        headers = {}
        for h in lines[1:]:
            k, _, v = h.partition(b":")
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int((await r.readline()).split(b";")[0], 16)
                if size == 0:
                    while (await r.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data += await r.readexactly(size)
                await r.readexactly(2)
            data = bytes(data)
        elif "content-length" in headers:
            data = await r.readexactly(int(headers["content-length"]))
        elif status in (204, 304) or 100 <= status < 200:
            data = b""
        else:
            data = await r.read()  # delimited by the close
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, data


def parse_url(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise ValueError(f"{url}: only http://host:port URLs (the simulator speaks plain HTTP)")
    return u.hostname, u.port or 80


def percentile(values, p):
    """Nearest-rank percentile of values (a list), or None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def dist(values):
    """{n, p50, p99, max, mean} in milliseconds of a list of seconds."""
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None, "mean": None}
    ms = [v * 1000.0 for v in values]
    return {"n": len(ms), "p50": round(percentile(ms, 50), 2), "p99": round(percentile(ms, 99), 2),
            "max": round(max(ms), 2), "mean": round(sum(ms) / len(ms), 2)}


class Fleet:
    """What the dataplanes share: counters, and the target version the benchmark waits for."""

    def __init__(self, n):
        self.n = n
        self.target = None  # version being waited for
        self.reached = 0  # dataplanes whose applied version is >= target
        self.all_reached = asyncio.Event()
        self.errors = {}  # "poll 503", "status 400", "poll: ConnectionResetError", ... -> count
        self.last_error = {}  # same key -> one example body
        self.refused_polls = 0  # 304 with Retry-After (max_long_polls reached)
        self.polls = 0
        self.reports = 0
        self.stopping = False

    def error(self, key, example=""):
        self.errors[key] = self.errors.get(key, 0) + 1
        if example:
            self.last_error[key] = example[:300]

    def set_target(self, version, dps):
        self.target = version
        self.reached = sum(1 for d in dps if d.acked_version >= version)
        self.all_reached = asyncio.Event()
        if self.reached >= self.n:
            self.all_reached.set()

    def on_applied(self, old, new):
        t = self.target
        if t is not None and old < t <= new:
            self.reached += 1
            if self.reached >= self.n:
                self.all_reached.set()


class Dataplane:
    __slots__ = ("fleet", "id", "host", "port", "auth", "poll_wait_ms", "heartbeat", "labels", "labels_json", "labels_q",
                 "seen", "applied", "acked_version", "hash", "received", "acked", "poll_conn", "beat_conn", "requests", "traffic_version",
                 "traffic_requests", "traffic_errors", "traffic_buckets", "rng")

    def __init__(self, fleet, dp_id, url, token, poll_wait_ms, heartbeat, labels):
        self.fleet = fleet
        self.id = dp_id
        self.host, self.port = parse_url(url)
        self.auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.poll_wait_ms = poll_wait_ms
        self.heartbeat = heartbeat
        self.labels = labels
        self.labels_json = json.dumps(labels, separators=(",", ":"), sort_keys=True)
        self.labels_q = "&labels=" + urllib.parse.quote(self.labels_json, safe="")
        self.seen = 0  # newest version seen (applied or rejected)
        self.applied = 0  # version running (what its reports say)
        self.acked_version = 0  # newest version the control plane took a report of (answered 200)
        self.hash = None  # its document's hash
        self.received = {}  # version -> monotonic time its poll answer was read
        self.acked = {}  # version -> monotonic time the control plane answered its ACK
        self.poll_conn = Conn(self.host, self.port)
        self.beat_conn = Conn(self.host, self.port)
        self.requests = 0
        self.rng = random.Random(dp_id)
        self.traffic_version = 0
        self.traffic_requests = self.traffic_errors = 0
        self.traffic_buckets = [0] * BUCKETS

    def report_body(self):
        """The real client's report: the latest ACK, live stats (hash inside), labels, traffic."""
        if self.traffic_version != self.applied:  # counters restart on another version
            self.traffic_version = self.applied
            self.traffic_requests = self.traffic_errors = 0
            self.traffic_buckets = [0] * BUCKETS
        served = self.rng.randint(50, 150)
        self.requests += served
        self.traffic_requests += served
        if self.rng.random() < 0.1:
            self.traffic_errors += 1
        b = self.traffic_buckets
        b[2] += served // 2
        b[3] += served - served // 2
        stats = {"requests": self.requests, "errors_5xx": 0, "latency_ms": {"p50": 5, "p99": 10}, "inflight": 0, "queued": 0,
                 "rss_bytes": 48 << 20, "endpoints": {"eth": {"up": 1, "total": 1, "panic": False}}}
        if self.hash is not None:
            stats["hash"] = self.hash
        msg = {"version": self.applied, "applied": True, "stats": stats, "labels": self.labels,
               "traffic": {"version": self.applied,
                           "services": {"eth": {"requests": self.traffic_requests, "errors": self.traffic_errors,
                                                "latency_ms_buckets": b}}}}
        return json.dumps(msg, separators=(",", ":")).encode()

    def status_head(self, length):
        return (f"POST /v1/dataplanes/{self.id}/status HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.auth}"
                f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()

    async def send_report(self, conn):
        version = self.applied
        body = self.report_body()
        status, _, data = await conn.request(self.status_head(len(body)), body, 10.0)
        self.fleet.reports += 1
        if status != 200:
            self.fleet.error(f"status {status}", data.decode("utf-8", "replace"))
        elif version > self.acked_version:
            old, self.acked_version = self.acked_version, version
            self.acked.setdefault(version, now())
            self.fleet.on_applied(old, version)
        return status

    async def poll_loop(self):
        f = self.fleet
        failures = 0
        while not f.stopping:
            head = (f"GET /v1/dataplanes/{self.id}/config?version={self.seen}&wait={self.poll_wait_ms}ms{self.labels_q}"
                    f" HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.auth}\r\n").encode()
            t0 = now()
            try:
                status, headers, data = await self.poll_conn.request(head, b"", self.poll_wait_ms / 1000.0 + 10.0)
            except (OSError, HttpError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                if f.stopping:
                    return
                f.error(f"poll: {type(e).__name__}", str(e))
                failures += 1
                await asyncio.sleep(backoff(failures, self.rng))
                continue
            took = now() - t0
            if status == 200:
                f.polls += 1
                failures = 0
                t_recv = now()
                try:
                    doc = json.loads(data)
                    version = int(doc["version"])
                    h = doc.get("hash")
                except (ValueError, KeyError, TypeError) as e:
                    f.error("poll: unreadable config", str(e))
                    await asyncio.sleep(backoff(1, self.rng))
                    continue
                if version == self.seen:
                    if took < MIN_POLL:
                        await asyncio.sleep(MIN_POLL)
                    continue
                self.received[version] = t_recv
                self.seen = self.applied = version
                self.hash = h
                try:
                    await self.send_report(self.poll_conn)
                except (OSError, HttpError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                    f.error(f"ack: {type(e).__name__}", str(e))
            elif status == 304:
                f.polls += 1
                failures = 0
                if "retry-after" in headers:
                    f.refused_polls += 1
                    await asyncio.sleep(float(headers.get("retry-after", "1") or 1))
                elif took < MIN_POLL:
                    await asyncio.sleep(MIN_POLL)
            else:
                f.error(f"poll {status}", data.decode("utf-8", "replace"))
                failures += 1
                await asyncio.sleep(backoff(failures, self.rng))

    async def beat_loop(self):
        f = self.fleet
        await asyncio.sleep(self.rng.uniform(0, self.heartbeat))  # a fleet does not beat in lockstep
        while not f.stopping:
            try:
                await self.send_report(self.beat_conn)
            except (OSError, HttpError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                if f.stopping:
                    return
                f.error(f"heartbeat: {type(e).__name__}", str(e))
            await asyncio.sleep(self.heartbeat)

    def close(self):
        self.poll_conn.close()
        self.beat_conn.close()


def backoff(failures, rng):
    cap = min(BACKOFF_MAX, BACKOFF_MIN * (2 ** max(0, failures - 1)))
    return rng.uniform(cap / 2, cap)


# --- the control plane's process figures -------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_figures(pid):
    """{rss_bytes, cpu_s, fds} of a process, from /proc; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)
        rss = None
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            fds = None
        return {"rss_bytes": rss, "cpu_s": cpu, "fds": fds}
    except (OSError, ValueError, IndexError):
        return None


def tree_figures(root):
    """proc_figures summed over a process and its children (PostgreSQL's postmaster and backends)."""
    pids = [root]
    try:
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        st = f.read()
                    if int(st[st.rindex(")") + 2:].split()[1]) == root:
                        pids.append(int(d))
                except (OSError, ValueError):
                    pass
    except OSError:
        return None
    total = {"rss_bytes": 0, "cpu_s": 0.0, "fds": 0, "processes": 0}
    for p in pids:
        f = proc_figures(p)
        if f is None:
            continue
        total["processes"] += 1
        for k in ("rss_bytes", "cpu_s", "fds"):
            total[k] += f[k] or 0
    return total if total["processes"] else None


TREE_PIDS = []  # --tree-pid: measured with their children, shown as "tree:<pid>"


def figures(pids):
    out = {str(p): proc_figures(p) for p in pids}
    for p in TREE_PIDS:
        out[f"tree:{p}"] = tree_figures(p)
    return out


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


# --- admin calls, timed from their own process -------------------------------------------------

def admin_prober(urls, token, rate, go, stop, out):
    """Runs in a child process (so the fleet's event loop does not delay its reads): alternates
    GET /v1/versions and GET /v1/dataplanes?limit=100, each on a new connection as pathwayctl
    makes them, at `rate` calls per second over the URLs, until `stop` is set; puts
    {"calls": [[path, monotonic start, seconds]...], "errors": {...}} on `out`."""
    paths = ["/v1/versions", "/v1/dataplanes?limit=100"]
    while not go.wait(0.1):
        if stop.is_set():
            out.put({"calls": [], "errors": {}})
            return
    calls = []
    errors = {}
    i = 0
    period = 1.0 / rate
    nxt = time.monotonic()
    while not stop.is_set():
        path = paths[i % len(paths)]
        host, port = parse_url(urls[(i // len(paths)) % len(urls)])
        i += 1
        t0 = time.monotonic()
        try:
            c = http.client.HTTPConnection(host, port, timeout=10)
            c.request("GET", path, headers={"Authorization": "Bearer " + token})
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                calls.append([path, t0, time.monotonic() - t0])
            else:
                errors[f"{path} {r.status}"] = errors.get(f"{path} {r.status}", 0) + 1
        except Exception as e:  # noqa: BLE001 - every failure is counted, whatever it is
            errors[f"{path} {type(e).__name__}"] = errors.get(f"{path} {type(e).__name__}", 0) + 1
        nxt += period
        stop.wait(max(0.0, nxt - time.monotonic()))
    out.put({"calls": calls, "errors": errors})


# --- the admin side of the benchmark -----------------------------------------------------------

def admin_call(url, method, path, token, body=None, headers=None, timeout=30.0):
    host, port = parse_url(url)
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        h = {"Authorization": "Bearer " + token}
        h.update(headers or {})
        if body is not None:
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data and r.getheader("content-type", "").startswith("application/json")
                          else data)
    finally:
        c.close()


async def admin_call_async(url, method, path, token, body=None, timeout=30.0):
    """An admin call on a new connection, from the event loop."""
    host, port = parse_url(url)
    conn = Conn(host, port)
    payload = json.dumps(body).encode() if body is not None else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    try:
        status, _, data = await conn.request(head, payload, timeout)
    finally:
        conn.close()
    return status, (json.loads(data) if data else None)


def push_document(base, i):
    """A fleet document that differs for every i: the pool's per-host connection cap."""
    doc = json.loads(json.dumps(base))
    doc.setdefault("defaults", {}).setdefault("pool", {})["max_conns_per_host"] = 10 + i % 1000
    return doc


DEFAULT_DOCUMENT = {
    "log": {"level": "info"},
    "services": [{"id": "eth", "endpoints": [{"url": "http://127.0.0.1:8545"}]}],
}


# --- the run ------------------------------------------------------------------------------------

def make_fleet(args, fleet):
    regions = ["eu", "us", "ap"]
    dps = []
    for i in range(args.n):
        labels = {"hostname": f"sim-{i // 16:04d}", "region": regions[i % len(regions)]}
        if i % 20 == 0:
            labels["canary"] = "true"
        dps.append(Dataplane(fleet, f"{args.prefix}{i:05d}", args.url[i % len(args.url)], args.token, args.poll_wait_ms,
                             args.heartbeat, labels))
    return dps


async def start_fleet(args, dps):
    """Starts every dataplane's loops, --ramp per second (connects do not all land at once)."""
    tasks = []
    gap = 1.0 / args.ramp if args.ramp > 0 else 0
    t0 = now()
    for i, d in enumerate(dps):
        tasks.append(asyncio.create_task(d.poll_loop()))
        tasks.append(asyncio.create_task(d.beat_loop()))
        if gap:
            delay = t0 + (i + 1) * gap - now()
            if delay > 0:
                await asyncio.sleep(delay)
    return tasks


async def loop_lag_probe(samples, stopping):
    """How late the simulator's own event loop runs (a 10 ms tick): its share of any latency."""
    while not stopping():
        t = now()
        await asyncio.sleep(0.01)
        samples.append((t, max(0.0, now() - t - 0.01)))


def cpu_of_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def active_version(url, token):
    status, body = await admin_call_async(url, "GET", "/v1/versions?limit=1", token)
    if status != 200:
        raise RuntimeError(f"GET /v1/versions: {status} {body}")
    versions = body.get("versions") or []
    return versions[0]["version"] if versions else 0


async def bench(args):
    fleet = Fleet(args.n)
    dps = make_fleet(args, fleet)
    result = {"n": args.n, "urls": args.url, "heartbeat_s": args.heartbeat, "poll_wait_ms": args.poll_wait_ms,
              "connections_per_dataplane": 2, "pushes": [], "loadavg_start": loadavg()}
    pids = args.pid or []
    lag = []
    lag_task = asyncio.create_task(loop_lag_probe(lag, lambda: fleet.stopping))

    if args.bench and not args.admin_token:
        raise SystemExit("fleet_sim: --bench needs --admin-token or --admin-token-file")
    version = await active_version(args.url[0], args.admin_token) if args.admin_token else None
    if args.bench and version == 0:
        st, body = await admin_call_async(args.url[0], "PUT", "/v1/config", args.admin_token, push_document(args.document, 0))
        if st not in (200, 201):
            raise SystemExit(f"fleet_sim: seeding PUT /v1/config: {st} {body}")
        version = body["version"]
    result["cp_before"] = figures(pids)
    # the admin prober is forked now, before the fleet's thousands of sockets exist; it starts
    # calling once the fleet is synced
    go, stop, out = multiprocessing.Event(), multiprocessing.Event(), multiprocessing.Queue()
    prober = None
    if args.bench:
        prober = multiprocessing.Process(target=admin_prober, args=(args.url, args.admin_token, args.admin_rate, go, stop, out),
                                         daemon=True)
        prober.start()

    t_start = now()
    cpu_self0 = cpu_of_self()
    tasks = await start_fleet(args, dps)
    if version is not None:
        fleet.set_target(version, dps)
        try:
            await asyncio.wait_for(fleet.all_reached.wait(), args.sync_timeout)
        except asyncio.TimeoutError:
            pass
        result["synced"] = fleet.reached
        result["sync_s"] = round(now() - t_start, 3)
        progress(args, f"{fleet.reached}/{args.n} dataplanes ACKed version {version} after {result['sync_s']} s "
                       f"(ramp {args.ramp}/s)")
        if fleet.reached < args.n:
            result["ok"] = False
            result["failure"] = f"only {fleet.reached} of {args.n} dataplanes ACKed version {version} within {args.sync_timeout} s"
    if not args.bench:
        await run_for(args, fleet, dps)
        fleet.stopping = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for d in dps:
            d.close()
        result["errors"] = fleet.errors
        return result
    if not result.get("synced") == args.n:
        stop.set()
        prober.join(10)
        return await finish(args, fleet, dps, tasks, lag, lag_task, result, None, None)

    # a quiet connected fleet: polls parked, heartbeats flowing; what it costs the control plane
    go.set()
    await asyncio.sleep(min(args.heartbeat, 2.0))  # the first heartbeats land
    q0 = figures(pids)
    tq = now()
    await asyncio.sleep(args.steady)
    q1 = figures(pids)
    result["cp_connected"] = q1
    result["steady"] = {"seconds": round(now() - tq, 3), "cpu_s": {p: (q1[p]["cpu_s"] - q0[p]["cpu_s"]) if q0[p] and q1[p]
                                                                    else None for p in q1}}
    progress(args, f"quiet fleet for {args.steady} s: control plane CPU {fmt_cpu(result['steady'], args.n)}")

    pooled = []  # every dataplane's ACK latency of every push
    windows = []  # (PUT sent, last ACK) of every push: admin calls overlapping one are "during a push"
    for i in range(1, args.pushes + 1):
        url = args.url[(i - 1) % len(args.url)]  # pushes alternate over the replicas
        doc = push_document(args.document, i)
        c0 = figures(pids)
        t_sent = now()
        st, body = await admin_call_async(url, "PUT", "/v1/config", args.admin_token, doc)
        t_put = now()
        if st != 201:
            fleet.error(f"PUT {st}", json.dumps(body)[:300])
            progress(args, f"push {i}: PUT /v1/config answered {st}: {body}")
            continue
        v = body["version"]
        fleet.set_target(v, dps)
        try:
            await asyncio.wait_for(fleet.all_reached.wait(), args.ack_timeout)
        except asyncio.TimeoutError:
            pass
        windows.append((t_sent, now()))
        c1 = figures(pids)
        recv = [d.received[v] - t_put for d in dps if v in d.received]
        ack = [d.acked[v] - t_put for d in dps if v in d.acked]
        p = {"version": v, "via": url, "put_ms": round((t_put - t_sent) * 1000, 2), "acked": len(ack),
             "all_acked_ms": round((max(d.acked[v] for d in dps if v in d.acked) - t_put) * 1000, 2) if ack else None,
             "receive": dist(recv), "ack": dist(ack), "_recv": recv,
             # the control plane's CPU from the PUT to the last ACK: against the wall time, whether it
             # was busy computing or waiting (on fsync, on the simulator)
             "cp_cpu_ms": {pid: round((c1[pid]["cpu_s"] - c0[pid]["cpu_s"]) * 1000) for pid in c1 if c0.get(pid) and c1[pid]}}
        result["pushes"].append(p)
        pooled.extend(ack)
        progress(args, f"push {i}: version {v} via {url}: PUT {p['put_ms']} ms; {len(ack)}/{args.n} ACKed, "
                       f"ACK p50 {p['ack']['p50']} p99 {p['ack']['p99']} max {p['ack']['max']} ms")
        if len(ack) < args.n:
            result["ok"] = False
            result["failure"] = f"push {i} (version {v}): {len(ack)} of {args.n} dataplanes ACKed within {args.ack_timeout} s"
            break
        await asyncio.sleep(args.interval)

    stop.set()
    admin = await asyncio.get_running_loop().run_in_executor(None, out.get, True, 30)
    prober.join(10)
    result["ack_pooled"] = dist(pooled)
    result["cpu_self_s"] = round(cpu_of_self() - cpu_self0, 3)
    result["run_s"] = round(now() - t_start, 3)
    admin["windows"] = windows
    return await finish(args, fleet, dps, tasks, lag, lag_task, result, admin, q1)


async def finish(args, fleet, dps, tasks, lag, lag_task, result, admin, q1):
    result["cp_after"] = figures(args.pid or [])
    # connections opened per kind: more than one per dataplane means the control plane closed
    # idle keep-alive connections between heartbeats (request_timeout below heartbeat_interval)
    result["connections_opened"] = {"poll": sum(d.poll_conn.opened for d in dps),
                                    "heartbeat": sum(d.beat_conn.opened for d in dps)}
    if args.bench and args.admin_token and result.get("synced") == args.n:
        # what GET /v1/dataplanes says of the fleet; a late heartbeat may show a transient state,
        # so it is asked again until every one is synced or a heartbeat interval and 2 s have passed
        t_list = now()
        while True:
            first = "dataplane_states_first" not in result
            examples = {} if first else None
            states, seen = await list_states(args, examples)
            if first:
                result["dataplane_states_first"] = states
                result["dataplane_state_examples"] = examples
            result["dataplane_states"] = states
            result["dataplanes_listed"] = seen
            if states.get("synced") == args.n or now() - t_list > args.heartbeat + 2.0:
                break
            await asyncio.sleep(0.5)
        result["all_synced_after_s"] = round(now() - t_list, 3) if states.get("synced") == args.n else None
    fleet.stopping = True
    lag_task.cancel()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, lag_task, return_exceptions=True)
    for d in dps:
        d.close()
    if admin is not None:
        def during(t0, lat):
            return any(t0 < b and t0 + lat > a for a, b in admin["windows"])
        calls = admin["calls"]
        result["admin"] = {"all": dist([c[2] for c in calls]),
                           "quiet": dist([c[2] for c in calls if not during(c[1], c[2])]),
                           "during_push": dist([c[2] for c in calls if during(c[1], c[2])])}
        for path in sorted({c[0] for c in calls}):
            result["admin"][path] = dist([c[2] for c in calls if c[0] == path])
        result["admin_errors"] = admin["errors"]
    if result["pushes"]:
        acks = [p["ack"]["p50"] for p in result["pushes"]]
        result["ack_p50_ms_median"] = percentile(acks, 50)
        result["ack_p99_ms_worst"] = max(p["ack"]["p99"] for p in result["pushes"])
        result["ack_max_ms_worst"] = max(p["ack"]["max"] for p in result["pushes"])
        # the CPU a push costs per dataplane (its delivery and its ACK): the control plane's replicas
        # together, and PostgreSQL's processes (--tree-pid) apart
        for key, pick in (("cp", lambda k: not k.startswith("tree:")), ("db", lambda k: k.startswith("tree:"))):
            per_push = [sum(v for k, v in p["cp_cpu_ms"].items() if pick(k)) for p in result["pushes"]
                        if any(pick(k) for k in p.get("cp_cpu_ms", {}))]
            result[f"{key}_cpu_us_per_dataplane_per_push"] = (round(1000.0 * percentile(per_push, 50) / args.n, 1) if per_push
                                                             else None)
        result["receive_pooled"] = dist([x for p in result["pushes"] for x in p.pop("_recv", [])])
        result["all_acked_ms"] = dist([p["all_acked_ms"] / 1000.0 for p in result["pushes"] if p["all_acked_ms"] is not None])
    before = result.get("cp_before") or {}
    per_dp = {}
    for pid, q in (q1 or {}).items():
        b = before.get(pid)
        if b and q and b["rss_bytes"] is not None and q["rss_bytes"] is not None:
            per_dp[pid] = {"rss_bytes_per_dataplane": round((q["rss_bytes"] - b["rss_bytes"]) / args.n, 1),
                           "fds_per_dataplane": round((q["fds"] - b["fds"]) / args.n, 3) if q["fds"] and b["fds"] else None}
    result["per_dataplane"] = per_dp
    result["sim_loop_lag"] = dist([x for _, x in lag])
    if admin is not None:
        result["sim_loop_lag_during_push"] = dist([x for t, x in lag if any(a <= t <= b for a, b in admin["windows"])])
    result["errors"] = fleet.errors
    result["error_examples"] = fleet.last_error
    result["refused_polls"] = fleet.refused_polls
    result["polls"] = fleet.polls
    result["reports"] = fleet.reports
    result["loadavg_end"] = loadavg()
    result.setdefault("ok", True)
    return result


async def list_states(args, examples=None):
    """({state: count}, how many) of this fleet's dataplanes in GET /v1/dataplanes (every page);
    up to 3 dataplanes of each state other than synced go in `examples` (a dict) when given."""
    states, seen, after = {}, 0, None
    while True:
        path = "/v1/dataplanes?limit=1000" + (f"&after={urllib.parse.quote(after)}" if after else "")
        st, body = await admin_call_async(args.url[0], "GET", path, args.admin_token)
        if st != 200:
            raise RuntimeError(f"GET {path}: {st} {body}")
        for d in body["dataplanes"]:
            if d["id"].startswith(args.prefix):
                states[d["state"]] = states.get(d["state"], 0) + 1
                seen += 1
                if examples is not None and d["state"] != "synced" and len(examples.setdefault(d["state"], [])) < 3:
                    examples[d["state"]].append({k: d.get(k) for k in ("id", "applied_version", "delivered_version",
                                                                        "reported_version", "reported_hash", "expected_hash")})
        after = body.get("next_after")
        if not after:
            return states, seen


async def run_for(args, fleet, dps):
    t_end = now() + args.duration
    while now() < t_end:
        await asyncio.sleep(min(5.0, max(0.0, t_end - now())))
        applied = {}
        for d in dps:
            applied[d.applied] = applied.get(d.applied, 0) + 1
        progress(args, f"polls {fleet.polls}, reports {fleet.reports}, applied versions {applied}, errors {fleet.errors}")


def fmt_cpu(steady, n):
    parts = []
    for pid, cpu in steady["cpu_s"].items():
        if cpu is None:
            continue
        pct = 100.0 * cpu / steady["seconds"]
        parts.append(f"pid {pid} {pct:.1f}% of a core ({1e6 * cpu / steady['seconds'] / n:.1f} µs/s per dataplane)")
    return ", ".join(parts) or "(no --pid)"


def progress(args, msg):
    if not args.quiet:
        print(f"[fleet_sim {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def summary(r):
    """The result as lines for people."""
    out = [f"fleet of {r['n']} simulated dataplanes on {', '.join(r['urls'])} "
           f"(2 connections each, heartbeat {r['heartbeat_s']} s, poll wait {r['poll_wait_ms']} ms)"]
    out.append(f"  synced: {r.get('synced')}/{r['n']} in {r.get('sync_s')} s")
    if "steady" not in r:  # run mode, or a benchmark that did not get past the sync
        out.append(f"  errors: {r.get('errors') or 'none'}")
        if not r.get("ok", True):
            out.append(f"  FAILED: {r.get('failure')}")
        return "\n".join(out)
    for p in r.get("pushes", []):
        out.append(f"  push v{p['version']}: PUT {p['put_ms']} ms; receive p50/p99/max {p['receive']['p50']}/{p['receive']['p99']}/"
                   f"{p['receive']['max']} ms; ACK p50/p99/max {p['ack']['p50']}/{p['ack']['p99']}/{p['ack']['max']} ms "
                   f"({p['acked']} ACKed; control plane CPU {p['cp_cpu_ms']} ms)")
    if r.get("pushes"):
        a = r.get("ack_pooled") or {}
        out.append(f"  push -> ACK over {len(r['pushes'])} pushes: p50 (median of pushes) {r['ack_p50_ms_median']} ms, "
                   f"worst p99 {r['ack_p99_ms_worst']} ms, worst max {r['ack_max_ms_worst']} ms; all ACKs pooled: "
                   f"p50 {a.get('p50')} p99 {a.get('p99')} ms")
    for path, d in (r.get("admin") or {}).items():
        out.append(f"  admin calls, {path}: n {d['n']} p50 {d['p50']} ms p99 {d['p99']} ms max {d['max']} ms")
    if r.get("admin_errors"):
        out.append(f"  admin errors: {r['admin_errors']}")
    if r.get("steady"):
        out.append(f"  quiet connected fleet: {fmt_cpu(r['steady'], r['n'])}")
    for pid, b in (r.get("cp_before") or {}).items():
        a = (r.get("cp_connected") or {}).get(pid)
        if b and a:
            out.append(f"  pid {pid}: RSS {b['rss_bytes'] / 2**20:.1f} MiB -> {a['rss_bytes'] / 2**20:.1f} MiB connected "
                       f"({r['per_dataplane'][pid]['rss_bytes_per_dataplane'] / 1024:.1f} KiB per dataplane), fds {b['fds']} -> {a['fds']}")
    lag = r.get("sim_loop_lag") or {}
    pl = r.get("sim_loop_lag_during_push") or {}
    out.append(f"  simulator: loop lag p99 {lag.get('p99')} ms max {lag.get('max')} ms (during pushes p99 {pl.get('p99')} "
               f"max {pl.get('max')} ms), own CPU {r.get('cpu_self_s')} s over {r.get('run_s')} s")
    if r.get("dataplane_states") is not None:
        out.append(f"  GET /v1/dataplanes: {r['dataplanes_listed']} listed, states {r['dataplane_states']} "
                   f"(first listing {r['dataplane_states_first']}; all synced after {r['all_synced_after_s']} s)")
        for state, ex in (r.get("dataplane_state_examples") or {}).items():
            out.append(f"    {state}, for example: {json.dumps(ex[0])}")
    out.append(f"  errors: {r.get('errors') or 'none'}; refused polls (max_long_polls): {r.get('refused_polls')}")
    out.append(f"  load average: {r.get('loadavg_start')} -> {r.get('loadavg_end')}")
    if not r.get("ok", True):
        out.append(f"  FAILED: {r.get('failure')}")
    return "\n".join(out)


def read_token(value, path, what):
    if value:
        return value
    if path:
        with open(path) as f:
            return f.readline().strip()
    return None


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="fleet_sim.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", action="append", required=True,
                    help="a control plane replica (http://host:port); repeat for replicas, dataplanes are spread over them")
    ap.add_argument("-n", type=int, default=100, help="simulated dataplanes (default 100)")
    ap.add_argument("--token", help="dataplane-role token")
    ap.add_argument("--token-file")
    ap.add_argument("--admin-token", help="admin token (for --bench: the pushes and the admin calls)")
    ap.add_argument("--admin-token-file")
    ap.add_argument("--prefix", default="sim-", help="dataplane ids are <prefix><index> (default sim-)")
    ap.add_argument("--heartbeat", type=float, default=5.0, help="heartbeat interval in seconds (default 5, as a dataplane's)")
    ap.add_argument("--poll-wait", type=float, default=30.0, help="long-poll wait in seconds (default 30)")
    ap.add_argument("--ramp", type=float, default=1000.0, help="dataplanes started per second (default 1000; 0 = all at once)")
    ap.add_argument("--sync-timeout", type=float, default=120.0)
    ap.add_argument("--duration", type=float, default=30.0, help="run mode: how long the fleet stays connected")
    ap.add_argument("--bench", action="store_true", help="the benchmark (see above)")
    ap.add_argument("--pushes", type=int, default=10)
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between a push's last ACK and the next push")
    ap.add_argument("--ack-timeout", type=float, default=60.0)
    ap.add_argument("--steady", type=float, default=10.0, help="seconds of a quiet connected fleet measured before the pushes")
    ap.add_argument("--admin-rate", type=float, default=4.0, help="admin calls per second during the benchmark (default 4)")
    ap.add_argument("--document", help="JSON file of the fleet document the pushes vary (default: one service)")
    ap.add_argument("--pid", type=int, action="append", help="a control plane process to measure (repeat for replicas)")
    ap.add_argument("--tree-pid", type=int, action="append", default=[],
                    help="a process measured with its children, summed (PostgreSQL's postmaster)")
    ap.add_argument("--json", metavar="FILE", help="write the result as JSON (- = stdout)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = ap.parse_args(argv)
    try:
        for u in args.url:
            parse_url(u)
    except ValueError as e:
        ap.error(str(e))
    if args.n < 1:
        ap.error("-n: at least 1")
    args.token = read_token(args.token, args.token_file, "dataplane")
    args.admin_token = read_token(args.admin_token, args.admin_token_file, "admin")
    args.poll_wait_ms = int(args.poll_wait * 1000)
    TREE_PIDS[:] = args.tree_pid
    if args.document:
        with open(args.document) as f:
            args.document = json.load(f)
    else:
        args.document = DEFAULT_DOCUMENT
    return args


def raise_nofile(need):
    """Two sockets per dataplane plus a margin; the soft limit goes up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < need:
        raise SystemExit(f"fleet_sim: {need} descriptors needed but the open-file limit is {soft} (hard {hard}): "
                         f"raise it (ulimit -n) or lower -n")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    raise_nofile(2 * args.n + 256)
    try:
        result = asyncio.run(bench(args))
    except (OSError, RuntimeError, HttpError, asyncio.TimeoutError) as e:
        print(f"fleet_sim: {', '.join(args.url)}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if args.json == "-":
        json.dump(result, sys.stdout, indent=1)
        print()
    else:
        print(summary(result))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
