"""Dataplane against broken upstreams: responses cut short or malformed after the status went out,
status codes outside HTTP's range. Each answers the client as well as it can (a cut stream or a
502) and leaves the gateway serving, with nothing left in its accounting. The upstreams here are
scripted raw sockets (dp_util.RawUpstream) so they can send exactly the bytes a test needs."""

import http.client
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402
from pwtest import test  # noqa: E402
from dp_util import Pathway, RawUpstream, wait_for, counters_at_zero  # noqa: E402

CALL = '{"jsonrpc":"2.0","id":5,"method":"eth_call"}'
OK_BODY = b'{"jsonrpc":"2.0","id":5,"result":"0x1"}'


def ok_response():
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(OK_BODY) + OK_BODY


def read_cut(port, path="/v1/eth"):
    """One request over HTTP/1.1; returns (status, bytes read, cut) where cut says the body ended
    before its framing said it would."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=CALL, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        try:
            data = r.read()
            return r.status, len(data), False
        except (http.client.IncompleteRead, ConnectionError) as e:
            partial = getattr(e, "partial", b"")
            return r.status, len(partial or b""), True
    finally:
        conn.close()


def h2_frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def h2_literal(name, value):
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def h2c_request(port, path=b"/v1/eth", wait=1.0):
    """One POST over h2c (prior knowledge) with a hand-built HPACK block; reads whatever comes back
    for `wait` seconds. Returns the bytes (the caller only needs the gateway to survive it)."""
    body = CALL.encode()
    hdrs = (h2_literal(b":method", b"POST") + h2_literal(b":scheme", b"http") + h2_literal(b":path", path) +
            h2_literal(b":authority", b"x") + h2_literal(b"content-length", str(len(body)).encode()))
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    out = b""
    try:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b"") + h2_frame(1, 4, 1, hdrs) +
                  h2_frame(0, 1, 1, body))
        s.settimeout(0.2)
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            if not d:
                break
            out += d
    finally:
        s.close()
    return out


def assert_still_serving(pw, ups):
    """The gateway is alive, answers the next request, and holds nothing for the broken one."""
    assert pw.proc.alive(), pw.proc.output()[-3000:]
    st, _, body = pw.rpc("good", {"jsonrpc": "2.0", "id": 5, "method": "eth_call"})
    assert st == 200 and body["result"] == "0x1", (st, body)
    wait_for(lambda: counters_at_zero(pw), timeout=5, what="counters at zero")
    assert pw.proc.alive()


def partial_length(c, i):
    # promises 1000 bytes, sends 10, stops a while (the 10 go out to the client), then closes
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    time.sleep(0.3)
    return False


def bad_chunk(c, i):
    c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    time.sleep(0.3)
    c.sendall(b"zz\r\n")
    time.sleep(0.3)
    return False


def too_long_chunked(c, i):
    # the limit (4 KiB below) is crossed mid-stream, after the status went out, between sends
    c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(8):
        c.sendall(b"400\r\n" + b"y" * 1024 + b"\r\n")
        time.sleep(0.1)
    c.sendall(b"0\r\n\r\n")
    return True


def good(c, i):
    c.sendall(ok_response())
    return True


def faulty_gateway(script, extra=""):
    bad, ok = RawUpstream(script), RawUpstream(good)
    # retries off: what the client sees of one failing try (test_dataplane_failover covers retries)
    pw = Pathway([("eth", [f"http://127.0.0.1:{bad.port}"], "retry: {max_attempts: 1}"),
                  ("good", [f"http://127.0.0.1:{ok.port}"], "")],
                 extra=extra)
    return pw, [bad, ok]


@test
def test_upstream_cut_mid_body_ends_the_stream():
    # Before the fix the ERROR send freed the relay under its callers (heap-use-after-free).
    for script, extra in [(partial_length, ""), (bad_chunk, ""), (too_long_chunked, "limits:\n  max_response_body: 4KiB")]:
        pw, ups = faulty_gateway(script, extra)
        try:
            for _ in range(2):
                st, n, cut = read_cut(pw.port)
                assert st == 200 and cut, (script.__name__, st, n, cut)
            h2c_request(pw.port)
            assert_still_serving(pw, ups)
            assert pw.proc.stop() == 0, pw.proc.output()[-3000:]
        finally:
            for u in ups:
                u.close()
            pwtest.stop_all()


def status_line(code):
    def script(c, i):
        c.sendall(b"HTTP/1.1 " + code + b" X\r\nContent-Length: 2\r\n\r\n{}")
        return True
    return script


@test
def test_upstream_status_out_of_range_gives_502():
    # 000 used to abort the process in h2o's HTTP/2 encoder (it asserts 100 <= status <= 999)
    for code in [b"000", b"099", b"600", b"999"]:
        pw, ups = faulty_gateway(status_line(code))
        try:
            h2c_request(pw.port, wait=0.5)
            assert pw.proc.alive(), pw.proc.output()[-3000:]
            st, _, body = pw.rpc("eth", {"jsonrpc": "2.0", "id": 9, "method": "eth_call"})
            assert st == 502 and body["id"] == 9 and body["error"]["message"] == "bad response from upstream", (code, st, body)
            assert_still_serving(pw, ups)
        finally:
            for u in ups:
                u.close()
            pwtest.stop_all()


if __name__ == "__main__":
    pwtest.main()
