"""pathway-control's bounds against clients that misbehave or vanish: the connection cap, accept
running out of descriptors, dataplane tokens limited to ids, dead long polls, the number of
dataplanes and the size of their stats, rollback to a document today's schema refuses, and the
small rules of status reports. Each test starts its own control plane on 127.0.0.1."""

import json
import os
import socket
import sqlite3
import time

import pwtest
from cp_util import ADMIN, DATAPLANE, VIEWER, ControlPlane, expect, fleet

EU_TOKEN = "test-eu-dataplane-token-0123456789abcdef"


def socket_fds(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_get(sock, path, token=None):
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pwtest.test
def test_connection_cap():
    cp = ControlPlane(extra_config="max_connections: 4\n")
    pid = cp.proc.p.pid
    held = [socket.create_connection(("127.0.0.1", cp.port), timeout=5) for _ in range(4)]
    time.sleep(0.3)
    at_cap = socket_fds(pid)
    # beyond the cap: accepted by the kernel's backlog, not by the server, and not served
    waiting = socket.create_connection(("127.0.0.1", cp.port), timeout=5)
    more = [socket.create_connection(("127.0.0.1", cp.port), timeout=5) for _ in range(10)]
    http_get(waiting, "/healthz")
    waiting.settimeout(0.6)
    try:
        got = waiting.recv(100)
        raise AssertionError(f"served beyond max_connections: {got!r}")
    except socket.timeout:
        pass
    assert socket_fds(pid) <= at_cap, (socket_fds(pid), at_cap)
    # a connection closes: the first waiting one is taken and answered
    held.pop().close()
    waiting.settimeout(5)
    head = read_head(waiting)
    assert head.startswith(b"HTTP/1.1 200"), head
    for s in held + more + [waiting]:
        s.close()
    time.sleep(0.2)
    assert socket_fds(pid) <= at_cap
    expect(cp.call("GET", "/healthz", token=None), 200)
    assert cp.stop() == 0


@pwtest.test
def test_accept_out_of_descriptors_does_not_spin():
    cp = ControlPlane(nofile=32)
    pid = cp.proc.p.pid
    expect(cp.call("GET", "/healthz", token=None), 200)
    socks = []
    for _ in range(40):
        socks.append(socket.create_connection(("127.0.0.1", cp.port), timeout=5))
    time.sleep(0.3)  # the server has hit EMFILE by now; the rest wait in the backlog
    c0 = cpu_seconds(pid)
    time.sleep(1.0)
    used = cpu_seconds(pid) - c0
    assert used < 0.3, f"{used:.2f}s of CPU in 1s while out of descriptors"
    assert "pausing the listener" in cp.proc.output()
    for s in socks:
        s.close()
    # the listener resumes once descriptors are free
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            if cp.call("GET", "/healthz", token=None, timeout=2)[0] == 200:
                break
        except OSError:
            time.sleep(0.1)
    else:
        raise AssertionError("not serving after the connections closed")
    assert cp.stop() == 0


@pwtest.test
def test_dataplane_token_limited_to_ids():
    cp = ControlPlane(extra_tokens=[("dp-eu", EU_TOKEN, ["eu-*", "edge-[0-9]"])])
    expect(cp.call("PUT", "/v1/config", fleet()), 201)
    for dp_id in ("eu-1", "eu-west-2", "edge-7"):
        expect(cp.call("GET", f"/v1/dataplanes/{dp_id}/config?version=0", token=EU_TOKEN), 200)
        expect(cp.call("POST", f"/v1/dataplanes/{dp_id}/status", {"version": 1, "applied": True}, token=EU_TOKEN), 200)
    for dp_id in ("us-1", "edge-77", "xeu-1"):
        s, _, b = expect(cp.call("GET", f"/v1/dataplanes/{dp_id}/config?version=0", token=EU_TOKEN), 403)
        assert "dp-eu" in b["error"] and dp_id in b["error"], b
        expect(cp.call("POST", f"/v1/dataplanes/{dp_id}/status", {"version": 1, "applied": True}, token=EU_TOKEN), 403)
    # nothing was recorded for the refused ids
    expect(cp.call("GET", "/v1/dataplanes/us-1"), 404)
    # a token without ids is a shared fleet token: any id
    expect(cp.call("GET", "/v1/dataplanes/us-1/config?version=0", token=DATAPLANE), 200)


@pwtest.test
def test_dead_poll_turns_disconnected():
    cp = ControlPlane(heartbeat="1s")
    expect(cp.call("PUT", "/v1/config", fleet()), 201)
    # a poll that parks and whose client then vanishes: h2o 2.2 does not notice (it does not read
    # an HTTP/1 socket during a request), so the poll stays parked for its 30 s
    s = socket.create_connection(("127.0.0.1", cp.port))
    http_get(s, "/v1/dataplanes/dead/config?version=1&wait=30s", DATAPLANE)
    time.sleep(0.3)
    assert cp.call("GET", "/v1/dataplanes/dead")[2]["state"] != "disconnected"
    assert "pathway_control_long_polls 1" in cp.request("GET", "/metrics")[2].decode()
    s.close()
    time.sleep(1.2)
    assert cp.call("GET", "/v1/dataplanes/dead")[2]["state"] == "disconnected"
    assert 'pathway_control_dataplanes{state="disconnected"} 1' in cp.request("GET", "/metrics")[2].decode()
    assert cp.call("GET", "/v1/dataplanes")[2]["dataplanes"][0]["state"] == "disconnected"
    # a version handed to a dead poll later does not make it look alive (nor applying forever)
    s = socket.create_connection(("127.0.0.1", cp.port))
    http_get(s, "/v1/dataplanes/dead2/config?version=1&wait=30s", DATAPLANE)
    t_parked = time.monotonic()
    time.sleep(0.3)
    s.close()
    time.sleep(0.3)
    expect(cp.call("PUT", "/v1/config", fleet("warn")), 201)  # answers the dead poll
    time.sleep(max(0, t_parked + 1.3 - time.monotonic()))
    assert cp.call("GET", "/v1/dataplanes/dead2")[2]["state"] == "disconnected"


@pwtest.test
def test_dataplane_count_stats_and_paging():
    cp = ControlPlane(extra_config="max_dataplanes: 3\n")
    expect(cp.call("PUT", "/v1/config", fleet()), 201)
    for dp_id in ("a", "b", "c"):
        expect(cp.call("POST", f"/v1/dataplanes/{dp_id}/status", {"version": 1, "applied": True}, token=DATAPLANE), 200)
    s, _, b = expect(cp.call("POST", "/v1/dataplanes/d/status", {"version": 1, "applied": True}, token=DATAPLANE), 403)
    assert "max_dataplanes" in b["error"], b
    expect(cp.call("GET", "/v1/dataplanes/d/config?version=0", token=DATAPLANE), 403)
    expect(cp.call("GET", "/v1/dataplanes/d"), 404)
    # known ones still report
    expect(cp.call("POST", "/v1/dataplanes/a/status", {"version": 1, "applied": True}, token=DATAPLANE), 200)
    # paging by id
    s, _, b = expect(cp.call("GET", "/v1/dataplanes?limit=2", token=VIEWER), 200)
    assert [d["id"] for d in b["dataplanes"]] == ["a", "b"] and b["next_after"] == "b", b
    s, _, b = expect(cp.call("GET", "/v1/dataplanes?limit=2&after=b"), 200)
    assert [d["id"] for d in b["dataplanes"]] == ["c"] and b["next_after"] is None, b
    s, _, b = expect(cp.call("GET", "/v1/dataplanes"), 200)
    assert len(b["dataplanes"]) == 3 and b["next_after"] is None
    for q in ("limit=0", "limit=1001", "limit=x", "after=a%20b"):
        expect(cp.call("GET", "/v1/dataplanes?" + q), 400)
    # stats: at most 16 KiB as compact JSON
    ok = {"version": 1, "applied": True, "stats": {"pad": "x" * 16000}}
    expect(cp.call("POST", "/v1/dataplanes/a/status", ok, token=DATAPLANE), 200)
    big = {"version": 1, "applied": True, "stats": {"pad": "x" * 16400}}
    s, _, b = expect(cp.call("POST", "/v1/dataplanes/a/status", big, token=DATAPLANE), 400)
    assert "stats" in b["error"], b
    # a NACK names a version
    s, _, b = expect(cp.call("POST", "/v1/dataplanes/a/status", {"version": 0, "applied": False, "error": "x"},
                             token=DATAPLANE), 400)
    assert "version" in b["error"], b
    expect(cp.call("POST", "/v1/dataplanes/a/status", {"version": 0, "applied": True}, token=DATAPLANE), 200)


@pwtest.test
def test_late_ack_does_not_move_applied_back():
    cp = ControlPlane()
    expect(cp.call("PUT", "/v1/config", fleet()), 201)
    expect(cp.call("PUT", "/v1/config", fleet("warn")), 201)
    expect(cp.call("POST", "/v1/dataplanes/a/status", {"version": 2, "applied": True}, token=DATAPLANE), 200)
    s, _, b = expect(cp.call("POST", "/v1/dataplanes/a/status", {"version": 1, "applied": True}, token=DATAPLANE), 200)
    assert b["applied_version"] == 2 and b["state"] == "synced", b


@pwtest.test
def test_rollback_rechecks_the_document():
    cp = ControlPlane()
    s, _, v1 = expect(cp.call("PUT", "/v1/config", fleet()), 201)
    cp.stop()
    # versions written by an older pathway-control: one today's schema refuses, one stored in an
    # older canonical form (no defaults) under a hash that is not today's
    db = sqlite3.connect(cp.db)
    invalid = json.dumps({"log": {"level": "loud"}, "services": [{"id": "eth"}]})
    db.execute("INSERT INTO versions (version, created_ms, author, message, kind, document, hash) "
               "VALUES (2, 0, 'old', '', 'apply', ?, ?)", (invalid, "a" * 64))
    db.execute("INSERT INTO versions (version, created_ms, author, message, kind, document, hash) "
               "VALUES (3, 0, 'old', '', 'apply', ?, ?)", (json.dumps(fleet("warn")), "b" * 64))
    db.commit()
    db.close()
    cp.start()
    s, _, b = expect(cp.call("POST", "/v1/rollback", {"to": 2}), 400)
    joined = "\n".join(b["errors"])
    assert "log.level" in joined and "services[0]" in joined, b
    # rollback to 1: today's canonical form and hash, a new version
    s, _, b = expect(cp.call("POST", "/v1/rollback", {"to": 1}), 201)
    assert b["version"] == 4 and b["hash"] == v1["hash"], b
    # rollback to 3: re-canonicalised (defaults filled in), hashed today
    s, _, b = expect(cp.call("POST", "/v1/rollback", {"to": 3}), 201)
    assert b["version"] == 5 and b["hash"] != "b" * 64, b
    s, h, doc = expect(cp.call("GET", "/v1/config"), 200)
    assert "limits" in doc and h["pathway-hash"] == b["hash"]
    # identical to the active one: 200, no new version
    s, _, b = expect(cp.call("POST", "/v1/rollback", {"to": 3}), 200)
    assert b["created"] is False and b["version"] == 5
    s, _, b = expect(cp.call("PUT", "/v1/config", fleet("warn")), 200)
    assert b["version"] == 5


if __name__ == "__main__":
    pwtest.main()
