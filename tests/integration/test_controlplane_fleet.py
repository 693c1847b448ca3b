"""A fleet of long-polling dataplanes cannot lock operators out (issue 9): with 2,000 polls parked,
an admin GET /v1/config and a rollback each answer within 1 s; past max_long_polls, polls are
answered at once and close their connection, so the connections reserved for operators stay free."""

import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402
from cp_util import ADMIN, DATAPLANE, ControlPlane, expect, fleet  # noqa: E402

POLLS = 2000


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft >= need, f"this test needs {need} open files; the hard limit is {hard}"


def open_polls(port, n, version, prefix="dp", wait="60s"):
    """n raw HTTP/1.1 long polls, one connection each, for ids prefix-0..n-1 (bounded in count and
    time: each connect and send waits at most 5 s)."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall((f"GET /v1/dataplanes/{prefix}-{i}/config?version={version}&wait={wait} HTTP/1.1\r\n"
                   f"Host: 127.0.0.1\r\nAuthorization: Bearer {DATAPLANE}\r\n\r\n").encode())
        socks.append(s)
    return socks


def metric(cp, name):
    text = cp.request("GET", "/metrics")[2].decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def wait_metric(cp, name, pred, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = metric(cp, name)
        if pred(v):
            return v
        time.sleep(0.1)
    raise AssertionError(f"{name} is {metric(cp, name)} after {timeout}s")


def read_answers(socks, timeout=20.0):
    """The status line of each socket's first response, read with one selector (bounded)."""
    sel = selectors.DefaultSelector()
    got = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, b"")
    deadline = time.time() + timeout
    while len(got) < len(socks) and time.time() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            data = key.data + chunk
            if b"\r\n" in data or not chunk:
                got[s] = data.split(b"\r\n", 1)[0].decode(errors="replace")
                sel.unregister(s)
            else:
                sel.modify(s, selectors.EVENT_READ, data)
    sel.close()
    return got


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


@pwtest.test
def test_2000_parked_polls_leave_room_for_operators():
    raise_nofile(POLLS + 512)
    # the defaults: nothing about connections in the config
    cp = ControlPlane()
    expect(cp.call("PUT", "/v1/config", fleet("info")), 201)
    expect(cp.call("PUT", "/v1/config", fleet("warn")), 201)
    socks = []
    try:
        socks = open_polls(cp.port, POLLS, version=2)
        wait_metric(cp, "pathway_control_long_polls", lambda v: v == POLLS)
        # /healthz, a viewer and an admin read, and a rollback, each within 1 s
        (s, _, _), took = timed(lambda: cp.call("GET", "/healthz", token=None, timeout=5))
        assert s == 200 and took < 1.0, (s, took)
        (s, h, doc), took = timed(lambda: cp.call("GET", "/v1/config", timeout=5))
        assert s == 200 and h["etag"] == '"2"' and took < 1.0, (s, took)
        (s, _, b), took = timed(lambda: cp.call("POST", "/v1/rollback", {"to": 1}, timeout=5))
        assert s == 201 and b["version"] == 3 and took < 1.0, (s, b, took)
        # the rollback reached every parked poll
        answers = read_answers(socks)
        assert len(answers) == POLLS, f"{len(answers)} of {POLLS} polls answered"
        assert all(a.startswith("HTTP/1.1 200") for a in answers.values()), set(answers.values())
        (s, _, _), took = timed(lambda: cp.call("GET", "/v1/config", timeout=5))
        assert s == 200 and took < 1.0, (s, took)
    finally:
        for s in socks:
            s.close()
    assert cp.stop() == 0


@pwtest.test
def test_polls_beyond_the_budget_are_answered_at_once():
    raise_nofile(1024)
    cp = ControlPlane(extra_config="max_connections: 100\nreserved_connections: 20\n")
    expect(cp.call("PUT", "/v1/config", fleet()), 201)
    assert metric(cp, "pathway_control_max_long_polls") == 80
    assert metric(cp, "pathway_control_max_connections") == 100
    socks = []
    try:
        socks = open_polls(cp.port, 300, version=1)
        wait_metric(cp, "pathway_control_long_polls", lambda v: v == 80)
        # the other 220 were answered 304 at once, and their connections closed
        refused = wait_metric(cp, "pathway_control_long_polls_refused_total", lambda v: v == 220)
        assert refused == 220
        wait_metric(cp, "pathway_control_connections", lambda v: v <= 81)
        for _ in range(5):
            (s, _, _), took = timed(lambda: cp.call("GET", "/v1/config", timeout=5))
            assert s == 200 and took < 1.0, (s, took)
        (s, _, b), took = timed(lambda: cp.call("PATCH", "/v1/config", {"log": {"level": "warn"}}, timeout=5))
        assert s == 201 and took < 1.0, (s, took)
        answers = read_answers(socks)
        assert sum(a.startswith("HTTP/1.1 304") for a in answers.values()) == 220, answers
        assert sum(a.startswith("HTTP/1.1 200") for a in answers.values()) == 80, answers
        # with the budget full again, heartbeats that keep their connections open do not eat the
        # reserve: each is closed after its answer, and an operator still gets in at once
        for s in socks:
            s.close()
        socks = open_polls(cp.port, 80, version=2, prefix="again")
        wait_metric(cp, "pathway_control_long_polls", lambda v: v == 80)
        for i in range(40):
            s = socket.create_connection(("127.0.0.1", cp.port), timeout=5)
            socks.append(s)
            body = '{"version": 2, "applied": true}'
            s.sendall((f"POST /v1/dataplanes/again-{i}/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DATAPLANE}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
            s.settimeout(1.0)
            head = s.recv(65536)
            assert head.startswith(b"HTTP/1.1 200"), (i, head)
        (st, _, _), took = timed(lambda: cp.call("GET", "/v1/config", timeout=5))
        assert st == 200 and took < 1.0, (st, took)
    finally:
        for s in socks:
            s.close()
    assert "max_long_polls" in cp.proc.output()
    assert cp.stop() == 0


@pwtest.test
def test_connection_settings_must_leave_a_reserve():
    directory = tempfile.mkdtemp(prefix="pw-fleet-")
    try:
        for extra, needle in (("max_connections: 100\nreserved_connections: 100\n", "reserved_connections:"),
                              ("max_connections: 100\nreserved_connections: 10\nmax_long_polls: 95\n", "max_long_polls:"),
                              ("max_long_polls: -1\n", "max_long_polls:")):
            cfg = pwtest.write_file(directory, "cp.yaml", extra + "tokens: [{name: ops, role: admin, sha256: " + "0" * 64 + "}]\n")
            r = subprocess.run([pwtest.binary("pathway-control"), "-c", cfg], capture_output=True, text=True, timeout=20)
            assert r.returncode == 1 and needle in r.stderr, (extra, r.returncode, r.stderr)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pwtest.test
def test_server_raises_its_open_file_limit():
    # started with a soft limit below max_connections and a higher hard one: it raises its own
    cp = ControlPlane(nofile=None)
    cp.stop()
    args = [pwtest.binary("pathway-control"), "-c", cp.config]
    cp.proc = pwtest.Proc(["/bin/sh", "-c", 'ulimit -S -n 256 && exec "$@"', "sh"] + args, name="pathway-control", cwd="/")
    pwtest.wait_port(cp.port)
    with open(f"/proc/{cp.proc.p.pid}/limits") as f:
        line = next(line for line in f if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard, line
    assert metric(cp, "process_max_fds") == float(soft)
    assert cp.stop() == 0


if __name__ == "__main__":
    pwtest.main()
