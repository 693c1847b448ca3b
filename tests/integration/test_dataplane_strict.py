"""Dataplane: strict HTTP framing on both sides, reason phrases, TLS to upstreams addressed by an IP
literal, and HTTP/2 per listener. Clients are raw sockets so the tests send exactly the bytes a
smuggling attempt would, and see exactly what comes back, including whether the connection closed."""

import http.server
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402
from pwtest import test  # noqa: E402
from dp_util import Pathway, RawUpstream, start_mock, wait_for, counters_at_zero  # noqa: E402

CALL = b'{"jsonrpc":"2.0","id":7,"method":"eth_call"}'
OK_BODY = b'{"jsonrpc":"2.0","id":7,"result":"0x1"}'


def ok_response():
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(OK_BODY) + OK_BODY


def good(c, i):
    c.sendall(ok_response())
    return True


def read_response(s, timeout=5.0):
    """Reads one HTTP/1.x response framed by Content-Length from socket s. Returns (status line,
    headers dict lower-cased, body)."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        d = s.recv(65536)
        if not d:
            raise AssertionError(f"connection closed before a response head: {data!r}")
        data += d
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(body) < n:
        d = s.recv(65536)
        if not d:
            break
        body += d
    return lines[0], hdrs, body


def closed_by_peer(s, timeout=3.0):
    """True when the peer closes the connection (EOF or reset) within timeout."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def raw(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    return s


def req(head_lines, body=CALL):
    return ("\r\n".join(head_lines) + "\r\n\r\n").encode() + body


def chunked(body):
    return b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"


# --- 1. strict client framing ---------------------------------------------------------------


@test
def test_client_framing_refused_and_connection_closed():
    up = RawUpstream(good)
    try:
        pw = Pathway([("eth", [f"http://127.0.0.1:{up.port}"], "")])
        n = len(CALL)
        cases = [
            ("both Content-Length and Transfer-Encoding",
             req(["POST /v1/eth HTTP/1.1", "Host: x", f"Content-Length: {n}", "Transfer-Encoding: chunked"], chunked(CALL))),
            ("both Content-Length and Transfer-Encoding",  # the other order
             req(["POST /v1/eth HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", f"Content-Length: {n}"], chunked(CALL))),
            ("more than one Content-Length header",
             req(["POST /v1/eth HTTP/1.1", "Host: x", f"Content-Length: {n}", "Content-Length: 3"])),
            ("more than one Content-Length header",  # equal values too, as nginx does
             req(["POST /v1/eth HTTP/1.1", "Host: x", f"Content-Length: {n}", f"content-length: {n}"])),
            ("HTTP/1.1 request without Host", req(["POST /v1/eth HTTP/1.1", f"Content-Length: {n}"])),
            ("more than one Host header", req(["POST /v1/eth HTTP/1.1", "Host: a", "Host: b", f"Content-Length: {n}"])),
        ]
        for why, data in cases:
            s = raw(pw.port, data)
            try:
                status, hdrs, body = read_response(s)
                assert status == "HTTP/1.1 400 Bad Request", (why, status)
                doc = json.loads(body)
                assert doc["error"]["code"] == -32600 and why in doc["error"]["message"], (why, doc)
                assert doc["id"] == 7, (why, doc)  # the body was readable: its id comes back
                assert hdrs.get("connection", "").lower() == "close", (why, hdrs)
                assert closed_by_peer(s), why
            finally:
                s.close()
        # without a body too (a missing Host is judged there by other means)
        for data, want in [(req(["GET /v1/eth HTTP/1.1"], b""), "HTTP/1.1 400 Bad Request"),
                           (req(["GET /v1/eth HTTP/1.1", "Host: default"], b""), "HTTP/1.1 405 Method Not Allowed"),
                           (req(["GET /v1/eth HTTP/1.0"], b""), "HTTP/1.1 405 Method Not Allowed")]:
            s = raw(pw.port, data)
            try:
                status, _, body = read_response(s)
                assert status == want, (data, status, body)
            finally:
                s.close()
        assert up.requests == 0, "a refused request reached the upstream"
        # what stays allowed: HTTP/1.0 without Host, one Content-Length, chunked alone; keep-alive kept
        s = raw(pw.port, req(["POST /v1/eth HTTP/1.0", f"Content-Length: {n}"]))
        try:
            status, _, body = read_response(s)
            assert status.startswith("HTTP/1.1 200") and json.loads(body)["result"] == "0x1", (status, body)
        finally:
            s.close()
        s = raw(pw.port, req(["POST /v1/eth HTTP/1.1", "Host: x", f"Content-Length: {n}"]))
        try:
            assert read_response(s)[0] == "HTTP/1.1 200 OK"
            s.sendall(req(["POST /v1/eth HTTP/1.1", "Host: x", "Transfer-Encoding: chunked"], chunked(CALL)))
            assert read_response(s)[0] == "HTTP/1.1 200 OK"
        finally:
            s.close()
        assert pw.proc.alive()
        wait_for(lambda: counters_at_zero(pw), timeout=5, what="counters at zero")
    finally:
        up.close()


# --- 2. upstream framing --------------------------------------------------------------------


def bad_then_good(bad):
    def script(c, i):
        # the first answer is badly framed; the upstream keeps the connection open and would
        # happily answer the next request on it
        c.sendall(bad if i == 0 else ok_response())
        return True
    return script


@test
def test_upstream_conflicting_framing_is_502_and_connection_dropped():
    n = len(OK_BODY)
    cases = [
        ("upstream sent conflicting Content-Length headers",
         b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n" % (n, n + 5) + OK_BODY),
        ("upstream sent both Content-Length and Transfer-Encoding",
         b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(OK_BODY)),
        ("upstream sent both Content-Length and Transfer-Encoding",
         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n" + chunked(OK_BODY)),
    ]
    for why, bad in cases:
        up = RawUpstream(bad_then_good(bad))
        try:
            # retries off: the refusal itself is what is tested
            pw = Pathway([("eth", [f"http://127.0.0.1:{up.port}"], "retry: {max_attempts: 1}")], threads=1)
            st, _, body = pw.rpc("eth", json.loads(CALL))
            assert st == 502 and body["error"]["message"] == why and body["id"] == 7, (why, st, body)
            st, _, body = pw.rpc("eth", json.loads(CALL))
            assert st == 200 and body["result"] == "0x1", (why, st, body)
            # the second request came on a new connection: the first was never reused
            assert len(up.conns) == 2, (why, len(up.conns))
            assert pw.proc.alive()
            wait_for(lambda: counters_at_zero(pw), timeout=5, what="counters at zero")
        finally:
            up.close()
            pwtest.stop_all()
    # the same length twice is one length (RFC 9110 8.6): relayed, connection reused
    up = RawUpstream(lambda c, i: (c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n"
                                             % (n, n) + OK_BODY), True)[1])
    try:
        pw = Pathway([("eth", [f"http://127.0.0.1:{up.port}"], "")], threads=1)
        for _ in range(2):
            st, _, body = pw.rpc("eth", json.loads(CALL))
            assert st == 200 and body["result"] == "0x1", (st, body)
        assert len(up.conns) == 1, len(up.conns)
    finally:
        up.close()


@test
def test_gateway_error_after_upstream_head_has_only_gateway_headers():
    # the head is parsed (and was copied to the client's response) before the body turns out bad
    def bad_body(c, i):
        c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Upstream: 1\r\nContent-Type: text/plain\r\n\r\nzz\r\n")
        return False
    up = RawUpstream(bad_body)
    try:
        pw = Pathway([("eth", [f"http://127.0.0.1:{up.port}"], "")])
        s = raw(pw.port, req(["POST /v1/eth HTTP/1.1", "Host: x", f"Content-Length: {len(CALL)}"]))
        try:
            s.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                d = s.recv(65536)
                assert d, data
                data += d
            head = data.partition(b"\r\n\r\n")[0].decode().lower().split("\r\n")
        finally:
            s.close()
        assert head[0] == "http/1.1 502 bad gateway", head
        assert [h for h in head if h.startswith("content-type:")] == ["content-type: application/json"], head
        assert not [h for h in head if h.startswith("x-upstream")], head
    finally:
        up.close()


# --- 3. reason phrases ----------------------------------------------------------------------


@test
def test_reason_phrase_relayed_and_standard_for_gateway_errors():
    def x503(c, i):
        body = b'{"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"busy"}}'
        c.sendall(b"HTTP/1.1 503 X\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        return True
    up = RawUpstream(x503)
    dead = pwtest.free_port()
    try:
        pw = Pathway([("eth", [f"http://127.0.0.1:{up.port}"], ""), ("down", [f"http://127.0.0.1:{dead}"], "")])
        head = ["Host: x", "Content-Type: application/json", f"Content-Length: {len(CALL)}"]
        for path, want in [("/v1/eth", "HTTP/1.1 503 X"), ("/v1/down", "HTTP/1.1 502 Bad Gateway"),
                           ("/v1/nope", "HTTP/1.1 404 Not Found"), ("/v1", "HTTP/1.1 400 Bad Request")]:
            s = raw(pw.port, req([f"POST {path} HTTP/1.1", *head]))
            try:
                status, _, _ = read_response(s)
                assert status == want, (path, status, want)
            finally:
                s.close()
        s = raw(pw.port, req(["GET /v1/eth HTTP/1.1", "Host: x"], b""))
        try:
            assert read_response(s)[0] == "HTTP/1.1 405 Method Not Allowed"
        finally:
            s.close()
    finally:
        up.close()


# --- 4. TLS to an upstream addressed by an IP literal ---------------------------------------


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=cwd)


def make_ca_and_leaf(d, name, san):
    """A throwaway CA (ca.pem) and a leaf certificate it signs with the given subjectAltName."""
    if not os.path.exists(os.path.join(d, "ca.pem")):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                "-subj", "/CN=pathway test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


class TlsUpstream:
    """An HTTPS JSON-RPC upstream on 127.0.0.1 (python's ssl + http.server) that records the SNI
    each handshake carried (None when the client sent none)."""

    def __init__(self, cert, key, max_version=ssl.TLSVersion.MAXIMUM_SUPPORTED):
        self.sni = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.maximum_version = max_version
        ctx.load_cert_chain(cert, key)
        ctx.sni_callback = lambda sock, name, c: self.sni.append(name)

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(OK_BODY)))
                self.end_headers()
                self.wfile.write(OK_BODY)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@test
def test_https_upstream_ip_literal_verifies_ip_san():
    d = tempfile.mkdtemp(prefix="pw-dp-ipsan-")
    good_cert, good_key = make_ca_and_leaf(d, "ip", "IP:127.0.0.1")
    bad_cert, bad_key = make_ca_and_leaf(d, "dns", "DNS:localhost")
    ca = os.path.join(d, "ca.pem")
    # TLS 1.2 and 1.3 end the handshake differently in libh2o 2.2.5 (its own name check runs only
    # on the first): both must verify the IP SAN
    ups = {v: (TlsUpstream(good_cert, good_key, v), TlsUpstream(bad_cert, bad_key, v))
           for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)}
    try:
        services = []
        for v, (ok_up, bad_up) in ups.items():
            services.append((f"ip{v.value}", [f"https://127.0.0.1:{ok_up.port}\n        tls: {{ca_file: {ca}}}"], ""))
            services.append((f"noip{v.value}", [f"https://127.0.0.1:{bad_up.port}\n        tls: {{ca_file: {ca}}}"], ""))
        pw = Pathway(services, tmpdir=d)
        for v, (ok_up, bad_up) in ups.items():
            for _ in range(2):
                st, _, body = pw.rpc(f"ip{v.value}", json.loads(CALL))
                assert st == 200 and body["result"] == "0x1", (v, st, body)
            # RFC 6066 3: a literal IP address is not a host name and is not sent as SNI
            assert ok_up.sni and all(n is None for n in ok_up.sni), (v, ok_up.sni)
            st, _, body = pw.rpc(f"noip{v.value}", json.loads(CALL))
            assert st == 502 and body["error"]["message"] == "upstream connect failed", (v, st, body)
        assert "IP address mismatch" in pw.proc.output(), pw.proc.output()[-2000:]
        assert pw.proc.alive()
        wait_for(lambda: counters_at_zero(pw), timeout=5, what="counters at zero")
    finally:
        for ok_up, bad_up in ups.values():
            ok_up.close()
            bad_up.close()

# --- 5. HTTP/2 per listener -----------------------------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame


def first_bytes(port, data, n=9, timeout=3.0):
    """Sends data and returns the first n bytes that come back (fewer if the peer closes)."""
    s = raw(port, data)
    out = b""
    try:
        s.settimeout(timeout)
        while len(out) < n:
            d = s.recv(n - len(out))
            if not d:
                break
            out += d
    except (socket.timeout, ConnectionResetError):
        pass
    finally:
        s.close()
    return out


def curl(*args):
    r = subprocess.run(["curl", "-s", "--max-time", "10", *args], capture_output=True, timeout=20)
    return r.returncode, r.stdout


@test
def test_listener_http2_false_speaks_http1_only():
    d = tempfile.mkdtemp(prefix="pw-dp-h2-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
            "-subj", "/CN=127.0.0.1", cwd=d)
    _, up = start_mock()
    h1, tls_h1, tls_h2 = pwtest.free_port(), pwtest.free_port(), pwtest.free_port()
    tls = f"    tls:\n      certificate: {cert}\n      key: {key}"
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")], tmpdir=d, listen_extra="\n".join([
        "    http2: true",
        f"  - address: 127.0.0.1:{h1}", "    http2: false",
        f"  - address: 127.0.0.1:{tls_h1}", "    http2: false", tls,
        f"  - address: 127.0.0.1:{tls_h2}", tls]))
    # prior knowledge: an h2 SETTINGS frame from the default listener, an HTTP/1.1 400 from the other
    got = first_bytes(pw.port, H2_PREFACE + H2_SETTINGS)
    assert len(got) == 9 and got[3] == 4, got  # frame type 4 = SETTINGS
    got = first_bytes(h1, H2_PREFACE + H2_SETTINGS, n=12)
    assert got.startswith(b"HTTP/1.1 400"), got
    # Upgrade: h2c is taken (101) by the default listener only
    upgrade = req(["GET /v1/eth HTTP/1.1", "Host: x", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
                   "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"], b"")
    assert first_bytes(pw.port, upgrade, n=12) == b"HTTP/1.1 101", "the default listener stopped upgrading"
    assert first_bytes(h1, upgrade, n=12) == b"HTTP/1.1 405", "an HTTP/1.1-only listener upgraded to h2c"
    # curl's h2 attempts: prior knowledge fails, ALPN falls back to HTTP/1.1, the relay works over both
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})
    rc, out = curl("--http2-prior-knowledge", "-i", "-X", "POST", "--data", body, f"http://127.0.0.1:{h1}/v1/eth")
    assert not out.startswith(b"HTTP/2"), out
    rc, out = curl("--http2", "-i", "-X", "POST", "--data", body, f"http://127.0.0.1:{h1}/v1/eth")
    assert rc == 0 and out.startswith(b"HTTP/1.1 200"), out
    rc, out = curl("-k", "--http2", "-i", "-X", "POST", "--data", body, f"https://127.0.0.1:{tls_h1}/v1/eth")
    assert rc == 0 and out.startswith(b"HTTP/1.1 200") and b'"result":"0x1"' in out, out
    rc, out = curl("-k", "--http2", "-i", "-X", "POST", "--data", body, f"https://127.0.0.1:{tls_h2}/v1/eth")
    assert rc == 0 and out.startswith(b"HTTP/2 200") and b'"result":"0x1"' in out, out
    rc, out = curl("--http2-prior-knowledge", "-i", "-X", "POST", "--data", body, f"http://127.0.0.1:{pw.port}/v1/eth")
    assert rc == 0 and out.startswith(b"HTTP/2 200"), out
    assert pw.proc.alive()


# --- 6. endpoint request headers and userinfo -----------------------------------------------


class RecordingUpstream(RawUpstream):
    """A RawUpstream that answers OK and keeps each request's header lines [(name, value)] in
    .recorded."""

    def __init__(self):
        self.recorded = []
        super().__init__(good)

    def _read_request(self, c):
        got = RawUpstream._read_request(c)
        if got is not None:
            lines = got[0].decode("latin-1").split("\r\n")[1:]
            with self.lock:
                self.recorded.append([(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines)])
        return got


def values(head, name):
    return [v for k, v in head if k.lower() == name]


@test
def test_endpoint_headers_and_userinfo_sent_upstream():
    import base64
    ups = [RecordingUpstream() for _ in range(4)]
    try:
        a, b, c, d = (u.port for u in ups)
        pw = Pathway([
            ("a", [f"http://user:p%40ss@127.0.0.1:{a}/v2/KEY\n        headers: {{X-Api-Key: k1, X-Tenant: t}}"], ""),
            ("b", [f"http://user:pw@127.0.0.1:{b}/\n        headers: {{Authorization: Bearer tok}}"], ""),
            ("c", [f"http://127.0.0.1:{c}/\n        headers: {{Content-Type: application/x-custom}}"], ""),
            ("d", [f"http://127.0.0.1:{d}/"], ""),
        ])
        for svc in "abcd":
            for _ in range(2):
                st, _, body = pw.rpc(svc, json.loads(CALL), headers={"Authorization": "Basic client-own"})
                assert st == 200 and body["result"] == "0x1", (svc, st, body)
        basic = "Basic " + base64.b64encode(b"user:p@ss").decode()
        for head in ups[0].recorded:
            assert values(head, "x-api-key") == ["k1"] and values(head, "x-tenant") == ["t"], head
            assert values(head, "authorization") == [basic], head
            assert values(head, "content-type") == ["application/json"], head
        for head in ups[1].recorded:  # the endpoint's own Authorization wins over the URL's user:pass
            assert values(head, "authorization") == ["Bearer tok"], head
        for head in ups[2].recorded:  # the endpoint's Content-Type replaces the client's
            assert values(head, "content-type") == ["application/x-custom"], head
        for head in ups[3].recorded:  # nothing added; the client's Authorization is never relayed
            assert values(head, "authorization") == [] and values(head, "x-api-key") == [], head
        assert all(len(u.recorded) == 2 for u in ups), [len(u.recorded) for u in ups]
        # a changed header value applies on reload
        pw.write(pw.text().replace("X-Api-Key: k1", "X-Api-Key: k2"))
        st, _, body = pw.reload()
        assert st == 200, body
        st, _, _ = pw.rpc("a", json.loads(CALL))
        assert st == 200 and values(ups[0].recorded[-1], "x-api-key") == ["k2"], ups[0].recorded[-1]
    finally:
        for u in ups:
            u.close()


if __name__ == "__main__":
    pwtest.main()
