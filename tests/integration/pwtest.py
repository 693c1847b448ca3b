"""Shared helpers for integration tests: start the real binaries on 127.0.0.1 with ports they
pick, talk HTTP to them, and always stop them. Standard library only.

Each test script is run by ctest as `python3 tests/integration/<script>.py`; PW_BUILD_DIR and
PW_SOURCE_DIR come from the environment ctest sets."""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

SOURCE_DIR = os.environ.get("PW_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD_DIR = os.environ.get("PW_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))


def binary(name):
    """Path of a built binary by name (searched in the build tree's usual folders)."""
    for sub in ("dataplane", "controlplane", "tools", "."):
        p = os.path.join(BUILD_DIR, sub, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{name} not built under {BUILD_DIR}")


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, host="127.0.0.1"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class Proc:
    """A child process whose output goes to a log file; stop() ends it (SIGTERM, then SIGKILL)."""

    live = []
    started = []  # every process of the running test, whose log is deleted when the test passes

    def __init__(self, args, name=None, env=None, cwd=None):
        self.name = name or os.path.basename(args[0])
        self.log = tempfile.NamedTemporaryFile(prefix=f"pw-{self.name}-", suffix=".log", delete=False)
        self.args = args
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
        Proc.live.append(self)
        Proc.started.append(self)

    def output(self):
        with open(self.log.name, "r", errors="replace") as f:
            return f.read()

    def alive(self):
        return self.p.poll() is None

    def send(self, sig):
        """Sends a signal (signal.SIGHUP, ...) if the process still runs."""
        if self.alive():
            self.p.send_signal(sig)

    def stop(self, timeout=10.0, sig=signal.SIGTERM):
        """Stops the process; returns its exit code."""
        if self.alive():
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self in Proc.live:
            Proc.live.remove(self)
        return self.p.returncode

    def kill9(self):
        return self.stop(sig=signal.SIGKILL)


def stop_all():
    for p in list(Proc.live):
        p.stop()


def request(port, method, path, body=None, headers=None, timeout=10.0, host="127.0.0.1"):
    """One HTTP/1.1 request; returns (status, headers dict lower-cased, body bytes)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {})
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def request_json(port, method, path, body=None, headers=None, timeout=10.0):
    """Like request(); the body parsed as JSON (None when empty)."""
    status, hdrs, data = request(port, method, path, body, headers, timeout)
    return status, hdrs, (json.loads(data) if data else None)


def write_file(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


_tmpdirs = []


def tmpdir(prefix="pw-test-"):
    """A temporary directory, removed when main() ends."""
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


def make_env():
    """The environment for a nested `make` run by a test: without the outer make's jobserver and
    flags (ctest runs under `make test`), nor an inherited DESTDIR."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DESTDIR"):
        env.pop(k, None)
    return env


_tests = []
_failures = 0


def test(fn):
    """Decorator: registers a test function for main()."""
    _tests.append(fn)
    return fn


def main():
    """Runs every registered test (or those named in argv), stops every process after each,
    prints 'N passed, N failed' and exits non-zero on any failure."""
    global _failures
    chosen = [t for t in _tests if len(sys.argv) < 2 or t.__name__ in sys.argv[1:]]
    passed = 0
    for t in chosen:
        start = time.time()
        Proc.started = []
        try:
            t()
            passed += 1
            print(f"ok   {t.__name__} ({time.time() - start:.2f}s)", flush=True)
            stop_all()
            for p in Proc.started:  # a failing test keeps its logs to be read
                try:
                    os.unlink(p.log.name)
                except OSError:
                    pass
        except Exception:
            _failures += 1
            print(f"FAIL {t.__name__} ({time.time() - start:.2f}s)", flush=True)
            traceback.print_exc()
            for p in Proc.live:
                print(f"--- output of {p.name} ---\n{p.output()[-4000:]}", flush=True)
        finally:
            stop_all()
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)
    print(f"{passed} passed, {_failures} failed")
    sys.exit(1 if _failures else 0)
