"""Helpers for the dataplane's integration tests: start mock upstreams and pathway on free
127.0.0.1 ports, write configs, read stats. Builds on pwtest (standard library only)."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pwtest


def start_mock(*args):
    """Starts pathway-mock-upstream on a free port; returns (proc, port)."""
    port = pwtest.free_port()
    p = pwtest.Proc([pwtest.binary("pathway-mock-upstream"), "--port", str(port), *args], name=f"mock-{port}")
    pwtest.wait_port(port)
    return p, port


def mock_stats(port):
    status, _, body = pwtest.request_json(port, "GET", "/stats")
    assert status == 200, status
    return body


def config_text(services, listen_port, admin_port, extra="", threads=2, listen_extra="", admin_extra=""):
    """A pathway document. services: list of (id, [urls], yaml-overrides-or-""); admin_extra: lines
    added under admin: (indented)."""
    lines = [
        "listen:",
        f"  - address: 127.0.0.1:{listen_port}",
    ]
    if listen_extra:
        lines.append(listen_extra)
    lines += [
        "admin:",
        f"  address: 127.0.0.1:{admin_port}",
    ]
    if admin_extra:
        lines.append(admin_extra.rstrip("\n"))
    lines += [
        f"threads: {threads}",
    ]
    if extra:
        lines.append(extra.rstrip("\n"))
    lines.append("services:")
    for sid, urls, over in services:
        lines.append(f"  - id: {sid}")
        lines.append("    endpoints:")
        for u in urls:
            lines.append(f"      - url: {u}")
        if over:
            for ol in over.rstrip("\n").split("\n"):
                lines.append("    " + ol)
    return "\n".join(lines) + "\n"


class Pathway:
    """A running pathway: .port (relay), .admin (admin), .proc, .path (config file)."""

    def __init__(self, services, extra="", threads=2, listen_extra="", tmpdir=None, args=(), env=None, wait=True,
                 admin_extra=""):
        self.dir = tmpdir or tempfile.mkdtemp(prefix="pw-dp-")
        self.port = pwtest.free_port()
        self.admin = pwtest.free_port()
        self.services = services
        self.extra = extra
        self.threads = threads
        self.listen_extra = listen_extra
        self.admin_extra = admin_extra
        self.admin_token = None  # set when admin.token_file is: sent by stats(), metrics(), reload()
        self.path = os.path.join(self.dir, "pathway.yaml")
        self.write()
        self.proc = pwtest.Proc([pwtest.binary("pathway"), "-c", self.path, *args], name="pathway", env=env)
        if wait:
            self.wait_ready()

    def text(self, services=None, extra=None, listen_extra=None, port=None):
        return config_text(self.services if services is None else services, port or self.port, self.admin,
                           self.extra if extra is None else extra, self.threads,
                           self.listen_extra if listen_extra is None else listen_extra, self.admin_extra)

    def write(self, text=None):
        with open(self.path + ".tmp", "w") as f:
            f.write(text if text is not None else self.text())
        os.replace(self.path + ".tmp", self.path)

    def wait_ready(self, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.proc.alive():
                raise RuntimeError("pathway exited: " + self.proc.output()[-2000:])
            try:
                status, _, _ = pwtest.request(self.admin, "GET", "/ready", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError("pathway not ready")

    def admin_headers(self):
        return {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}

    def stats(self):
        status, _, body = pwtest.request_json(self.admin, "GET", "/stats", headers=self.admin_headers())
        assert status == 200, status
        return body

    def rpc(self, service="eth", body=None, headers=None, path=None, timeout=10.0):
        if body is None:
            body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
        return pwtest.request_json(self.port, "POST", path or f"/v1/{service}", body, headers, timeout)

    def reload(self):
        return admin_post(self.admin, "/reload", self.admin_headers())

    def metrics(self):
        status, _, body = pwtest.request(self.admin, "GET", "/metrics", headers=self.admin_headers())
        assert status == 200, status
        return body.decode()


def admin_post(admin, path, headers=None):
    """A state-changing admin call as pathwayctl or curl must make it: POST with
    Content-Type: application/json (a body of {}), no Origin. Returns (status, headers, JSON)."""
    return pwtest.request_json(admin, "POST", path, {}, headers)


def promtool_check(text):
    """`promtool check metrics` passes on text with no output at all (no lint warning either)."""
    # promtool is in the project's package list (scripts/debian-packages.txt): absent is a failure
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install Debian's prometheus package (make deps)"
    r = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0 and out.strip() == "", f"promtool check metrics (rc {r.returncode}):\n{out}"


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def counters_at_zero(pw):
    """True when nothing is in flight anywhere in pathway's accounting."""
    s = pw.stats()
    if s["requests"]["active"] != 0 or s["limiter"]["inflight"] != 0 or s["limiter"]["queued"] != 0:
        return False
    if s["upstream"]["busy"] != 0 or s["buffers"]["in_use"] != 0:
        return False
    for svc in s["services"]:
        if svc["limiter"]["inflight"] != 0 or svc["limiter"]["queued"] != 0:
            return False
        for ep in svc["endpoints"]:
            if ep["outstanding"] != 0 or ep["waiting"] != 0 or ep["open"] != ep["idle"]:
                return False
    return True


def parallel(n, fn):
    """Runs fn(i) on n threads at once; returns the results (exceptions are returned as values)."""
    results = [None] * n
    barrier = threading.Barrier(n)

    def run(i):
        try:
            barrier.wait(10)
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def raw_request(port, body, path="/v1/eth"):
    """Opens a socket and sends one POST without reading; returns the socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    data = body.encode() if isinstance(body, str) else body
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    return s


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def send_signal(proc, sig):
    """Sends a signal to a pwtest.Proc that is still running."""
    if proc.alive():
        proc.p.send_signal(sig)


class RawUpstream:
    """A scripted upstream on a free 127.0.0.1 port: for each request it reads (head + body by
    content-length), calls script(sock, index) to write whatever bytes the test needs. The script
    returns True to keep the connection for another request. close() stops it. .accepted and
    .closed count connections accepted and connections ended; .heads holds each request's head."""

    def __init__(self, script):
        self.script = script
        self.requests = 0
        self.closed = 0
        self.heads = []
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @staticmethod
    def _read_request(c):
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(65536)
            if not d:
                return None
            data += d
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(body) < length:
            d = c.recv(65536)
            if not d:
                return None
            body += d
        return head, body

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            while True:
                got = self._read_request(c)
                if got is None:
                    return
                with self.lock:
                    self.heads.append(got[0])
                    i = self.requests
                    self.requests += 1
                if not self.script(c, i):
                    return
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass
            with self.lock:
                self.closed += 1

    @property
    def accepted(self):
        with self.lock:
            return len(self.conns)

    def close(self):
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in the thread
        except OSError:
            pass
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


class RelayLoad:
    """`clients` threads relaying eth_blockNumber on keep-alive connections, spread over `ports` in
    turn, until finish(); every answer that is not a 200 with a JSON-RPC result, and every reset or
    timeout, is a failure. `pause` seconds between one client's requests (0: flat out)."""

    def __init__(self, ports, clients=6, pause=0.0):
        self.stop_flag = threading.Event()
        self.ok = {p: 0 for p in ports}
        self.failures = {p: [] for p in ports}
        self.pause = pause
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(ports[i % len(ports)],)) for i in range(clients)]
        for t in self.threads:
            t.start()

    def run(self, port):
        body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "eth_blockNumber", "params": []})
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not self.stop_flag.is_set():
            try:
                conn.request("POST", "/v1/eth", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                failure = None if r.status == 200 and "result" in json.loads(data) else (r.status, data[:200])
            except Exception as e:  # a reset or a timeout is a failure too
                failure = ("exception", repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            with self.lock:
                if failure is None:
                    self.ok[port] += 1
                else:
                    self.failures[port].append(failure)
            if self.pause:
                time.sleep(self.pause)
        conn.close()

    def finish(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(15)
        return self

    def totals(self):
        """(answers that were good, every failure) over all ports."""
        return sum(self.ok.values()), [f for fs in self.failures.values() for f in fs]

    def by_port(self):
        """({port: good answers}, {port: failures})."""
        return dict(self.ok), {p: len(fs) for p, fs in self.failures.items()}
