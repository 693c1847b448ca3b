"""Dataplane long polls: answered at once when the active version differs, within milliseconds of a
PUT otherwise, 304 when the wait ends; hundreds of open polls cost no thread each; a stopping
control plane answers them."""

import http.client
import os
import signal
import socket
import threading
import time

import pwtest
from cp_util import DATAPLANE, ControlPlane, expect, fleet


def poll(cp, dp_id, version, wait, timeout=30.0):
    t0 = time.monotonic()
    s, h, b = cp.call("GET", f"/v1/dataplanes/{dp_id}/config?version={version}&wait={wait}", token=DATAPLANE, timeout=timeout)
    return s, b, time.monotonic() - t0, time.monotonic()


def threads_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


@pwtest.test
def test_poll_answers_at_once_when_behind():
    cp = ControlPlane()
    expect(cp.call("PUT", "/v1/config", fleet()), 201)
    s, b, took, _ = poll(cp, "dp-1", 0, "30s")
    assert s == 200 and b["version"] == 1 and took < 1.0, (s, took)


@pwtest.test
def test_poll_woken_by_put_within_milliseconds():
    cp = ControlPlane()
    expect(cp.call("PUT", "/v1/config", fleet()), 201)
    for attempt in range(3):
        version = cp.call("GET", "/v1/versions?limit=1")[2]["active_version"]
        result = {}

        def waiter():
            result["r"] = poll(cp, "dp-1", version, "20s")

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.3)  # the poll is parked by now
        assert cp.call("GET", "/metrics")[0] == 200
        assert "pathway_control_long_polls 1" in cp.request("GET", "/metrics")[2].decode()
        s, _, b = expect(cp.call("PUT", "/v1/config", fleet(conns=20 + attempt)), 201)
        put_done = time.monotonic()
        t.join(10)
        status, body, took, finished = result["r"]
        assert status == 200 and body["version"] == b["version"], (status, body)
        # the answer left as the version was stored: well under the poll's 20s wait
        assert finished - put_done < 0.2, finished - put_done
        print(f"poll answered {1000 * (finished - put_done):.1f} ms after the PUT's response", flush=True)
        assert took < 2.0


@pwtest.test
def test_poll_ends_with_304_when_the_wait_ends():
    cp = ControlPlane()
    expect(cp.call("PUT", "/v1/config", fleet()), 201)
    s, b, took, _ = poll(cp, "dp-1", 1, "600ms")
    assert s == 304 and 0.55 <= took < 1.5, (s, took)
    s, b, took, _ = poll(cp, "dp-1", 1, "1")  # a bare number is seconds
    assert s == 304 and 0.95 <= took < 2.0, (s, took)
    # longer than h2o's 10 s request timeout: the parked request survives it
    s, b, took, _ = poll(cp, "dp-2", 1, "11s")
    assert s == 304 and 10.9 <= took < 12.5, (s, took)
    # waits beyond max_wait are cut to it
    cp2 = ControlPlane(max_wait="1s")
    expect(cp2.call("PUT", "/v1/config", fleet()), 201)
    s, b, took, _ = poll(cp2, "dp-1", 1, "1h")
    assert s == 304 and took < 2.0, (s, took)


@pwtest.test
def test_hundreds_of_polls_without_a_thread_each():
    cp = ControlPlane()
    expect(cp.call("PUT", "/v1/config", fleet()), 201)
    n = 300
    socks = []
    req = (f"GET /v1/dataplanes/dp-{{i}}/config?version=1&wait=30s HTTP/1.1\r\nHost: x\r\n"
           f"Authorization: Bearer {DATAPLANE}\r\n\r\n")
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", cp.port), timeout=20)
        s.sendall(req.replace("{i}", str(i)).encode())
        socks.append(s)
    deadline = time.time() + 10
    while time.time() < deadline:
        if f"pathway_control_long_polls {n}" in cp.request("GET", "/metrics")[2].decode():
            break
        time.sleep(0.05)
    else:
        raise AssertionError("polls not all parked")
    assert threads_of(cp.proc.p.pid) <= 2, threads_of(cp.proc.p.pid)
    t0 = time.monotonic()
    expect(cp.call("PUT", "/v1/config", fleet("warn")), 201)
    for s in socks:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, "connection closed"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data[:100]
        s.close()
    assert time.monotonic() - t0 < 5.0
    dps = cp.call("GET", "/v1/dataplanes")[2]["dataplanes"]
    assert len(dps) == n and all(d["state"] == "applying" and d["delivered_version"] == 2 for d in dps)


@pwtest.test
def test_client_gone_and_shutdown():
    cp = ControlPlane()
    expect(cp.call("PUT", "/v1/config", fleet()), 201)
    # a poll whose client went away is forgotten without harm
    s = socket.create_connection(("127.0.0.1", cp.port))
    s.sendall((f"GET /v1/dataplanes/gone/config?version=1&wait=30s HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {DATAPLANE}\r\n\r\n").encode())
    time.sleep(0.2)
    s.close()
    expect(cp.call("PUT", "/v1/config", fleet("warn")), 201)
    assert cp.call("GET", "/healthz", token=None)[0] == 200
    # SIGTERM answers parked polls with 503 and exits 0
    result = {}

    def waiter():
        result["r"] = poll(cp, "dp-1", 2, "30s")

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert cp.stop() == 0
    t.join(10)
    assert result["r"][0] == 503, result
    assert time.monotonic() - t0 < 3.0


if __name__ == "__main__":
    pwtest.main()
