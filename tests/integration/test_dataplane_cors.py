"""Dataplane: CORS per service. Preflights answered by Pathway (204 with the CORS headers for an
allowed origin, without them for others), Access-Control-Allow-Origin on relayed and gateway-made
responses to allowed origins, an upstream's own CORS headers replaced, and with CORS off exactly
the behaviour without it (OPTIONS is 405, no CORS header added)."""

import http.client
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402
from pwtest import test  # noqa: E402
from dp_util import Pathway, RawUpstream, start_mock, wait_for, counters_at_zero  # noqa: E402

APP = "https://app.example"
CALL = {"jsonrpc": "2.0", "id": 3, "method": "eth_chainId"}
BODY = b'{"jsonrpc":"2.0","id":3,"result":"0x1"}'


def leaky(c, i):
    """An upstream that answers with CORS headers of its own."""
    c.sendall(b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Allow-Credentials: true\r\n"
              b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
    return True


def call(port, method, path, headers=None, body=None):
    """One request; returns (status, [(name lower, value)], body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        if body is not None:
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, [(k.lower(), v) for k, v in r.getheaders()], data
    finally:
        conn.close()


def get(hdrs, name):
    return [v for k, v in hdrs if k == name]


def cors_names(hdrs):
    return [k for k, _ in hdrs if k.startswith("access-control-")]


def preflight(port, path, origin, method="POST", req_headers=None):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if req_headers is not None:
        h["Access-Control-Request-Headers"] = req_headers
    return call(port, "OPTIONS", path, h)


def cors_gateway(extra_services=()):
    _, up = start_mock()
    leak = RawUpstream(leaky)
    dead = pwtest.free_port()
    web = "cors:\n  allow_origins: [https://app.example, 'http://localhost:3000']\n  max_age: 10m"
    services = [
        ("web", [f"http://127.0.0.1:{up}"], web),
        ("down", [f"http://127.0.0.1:{dead}"], web),
        ("leaky", [f"http://127.0.0.1:{leak.port}"], web),
        ("plain", [f"http://127.0.0.1:{up}"], ""),
        ("plainleaky", [f"http://127.0.0.1:{leak.port}"], ""),
        *extra_services,
    ]
    return Pathway(services), leak


@test
def test_preflight_answered_for_allowed_origin():
    pw, leak = cors_gateway()
    try:
        st, hdrs, body = preflight(pw.port, "/v1/web", APP, req_headers="Content-Type, X-Evil, target-service-id")
        assert st == 204 and body == b"", (st, hdrs, body)
        assert get(hdrs, "access-control-allow-origin") == [APP], hdrs
        assert "Origin" in get(hdrs, "vary"), hdrs
        assert get(hdrs, "access-control-allow-methods") == ["POST, OPTIONS"], hdrs
        # only the safe list is allowed: x-evil is not
        assert get(hdrs, "access-control-allow-headers") == ["content-type, target-service-id"], hdrs
        assert get(hdrs, "access-control-max-age") == ["600"], hdrs
        assert get(hdrs, "x-request-id"), hdrs
        # a disallowed origin: a plain 204, no CORS header (the browser refuses the call)
        for origin in ("https://evil.example", "https://app.example.evil", "null"):
            st, hdrs, _ = preflight(pw.port, "/v1/web", origin, req_headers="content-type")
            assert st == 204 and cors_names(hdrs) == [], (origin, st, hdrs)
        # the second allowed origin, and /v1/web/ (the same route)
        st, hdrs, _ = preflight(pw.port, "/v1/web/", "http://localhost:3000")
        assert st == 204 and get(hdrs, "access-control-allow-origin") == ["http://localhost:3000"], hdrs
        assert get(hdrs, "access-control-allow-headers") == [], hdrs  # none asked, none given
        # not a preflight, or a service without CORS: as before (405)
        st, hdrs, _ = call(pw.port, "OPTIONS", "/v1/web", {"Origin": APP})
        assert st == 405 and get(hdrs, "allow") == ["POST"], (st, hdrs)
        st, hdrs, _ = preflight(pw.port, "/v1/plain", APP)
        assert st == 405 and cors_names(hdrs) == [], (st, hdrs)
        st, _, _ = preflight(pw.port, "/v1/nope", APP)
        assert st == 405, st
        # /v1 (service named by a header the preflight does not carry): any CORS service decides
        st, hdrs, _ = preflight(pw.port, "/v1", APP, req_headers="target-service-id,content-type")
        assert st == 204 and get(hdrs, "access-control-allow-origin") == [APP], hdrs
        assert get(hdrs, "access-control-allow-headers") == ["content-type, target-service-id"], hdrs
        st, hdrs, _ = preflight(pw.port, "/v1", "https://evil.example")
        assert st == 204 and cors_names(hdrs) == [], hdrs
        assert pw.proc.alive()
    finally:
        leak.close()


@test
def test_responses_carry_allow_origin_for_allowed_origins_only():
    pw, leak = cors_gateway()
    try:
        st, hdrs, body = call(pw.port, "POST", "/v1/web", {"Origin": APP}, CALL)
        assert st == 200 and json.loads(body)["result"] == "0x1", (st, body)
        assert get(hdrs, "access-control-allow-origin") == [APP], hdrs
        assert get(hdrs, "access-control-expose-headers") == ["X-Request-Id, X-Pathway-Attempts, X-Pathway-Hedged"], hdrs
        assert "Origin" in get(hdrs, "vary"), hdrs
        # the same through POST /v1 + Target-Service-Id
        st, hdrs, _ = call(pw.port, "POST", "/v1", {"Origin": APP, "Target-Service-Id": "web"}, CALL)
        assert st == 200 and get(hdrs, "access-control-allow-origin") == [APP], hdrs
        for h in ({"Origin": "https://evil.example"}, {}):
            st, hdrs, _ = call(pw.port, "POST", "/v1/web", h, CALL)
            assert st == 200 and cors_names(hdrs) == [], (h, hdrs)
        # a gateway-made error to an allowed origin: the browser may read it
        st, hdrs, body = call(pw.port, "POST", "/v1/down", {"Origin": APP}, CALL)
        assert st == 502 and json.loads(body)["id"] == 3, (st, body)
        assert get(hdrs, "access-control-allow-origin") == [APP], hdrs
        assert get(hdrs, "access-control-expose-headers") == ["X-Request-Id, X-Pathway-Attempts, X-Pathway-Hedged"], hdrs
        st, hdrs, _ = call(pw.port, "POST", "/v1/down", {"Origin": "https://evil.example"}, CALL)
        assert st == 502 and cors_names(hdrs) == [], hdrs
        # an upstream's own CORS headers give way to the service's
        st, hdrs, _ = call(pw.port, "POST", "/v1/leaky", {"Origin": APP}, CALL)
        assert st == 200 and get(hdrs, "access-control-allow-origin") == [APP], hdrs
        assert get(hdrs, "access-control-allow-credentials") == [], hdrs
        st, hdrs, _ = call(pw.port, "POST", "/v1/leaky", {"Origin": "https://evil.example"}, CALL)
        assert st == 200 and cors_names(hdrs) == [], hdrs
        # CORS off: the upstream's headers pass as they always did, nothing added
        st, hdrs, _ = call(pw.port, "POST", "/v1/plainleaky", {"Origin": APP}, CALL)
        assert st == 200 and get(hdrs, "access-control-allow-origin") == ["*"], hdrs
        assert get(hdrs, "access-control-expose-headers") == [] and get(hdrs, "vary") == [], hdrs
        st, hdrs, _ = call(pw.port, "POST", "/v1/plain", {"Origin": APP}, CALL)
        assert st == 200 and cors_names(hdrs) == [] and get(hdrs, "vary") == [], hdrs
        wait_for(lambda: counters_at_zero(pw), timeout=5, what="counters at zero")
    finally:
        leak.close()


@test
def test_any_origin_and_inherited_from_defaults():
    _, up = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], ""),
                  ("own", [f"http://127.0.0.1:{up}"], "cors:\n  allow_origins: [https://own.example]")],
                 extra="defaults:\n  cors:\n    allow_origins: ['*']\n    max_age: 30s")
    for origin in ("https://a.example", "http://localhost:8080"):
        st, hdrs, _ = preflight(pw.port, "/v1/eth", origin)
        assert st == 204 and get(hdrs, "access-control-allow-origin") == [origin], hdrs
        assert get(hdrs, "access-control-max-age") == ["30"], hdrs
        st, hdrs, _ = call(pw.port, "POST", "/v1/eth", {"Origin": origin}, CALL)
        assert st == 200 and get(hdrs, "access-control-allow-origin") == [origin], hdrs
    # a service's own list replaces the default one; max_age is still inherited
    st, hdrs, _ = preflight(pw.port, "/v1/own", "https://a.example")
    assert st == 204 and cors_names(hdrs) == [], hdrs
    st, hdrs, _ = preflight(pw.port, "/v1/own", "https://own.example")
    assert get(hdrs, "access-control-allow-origin") == ["https://own.example"], hdrs
    assert get(hdrs, "access-control-max-age") == ["30"], hdrs
    # /v1: the shortest max_age among the services that allow the origin
    st, hdrs, _ = preflight(pw.port, "/v1", "https://own.example")
    assert st == 204 and get(hdrs, "access-control-max-age") == ["30"], hdrs


@test
def test_cors_off_is_unchanged():
    _, up = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")])
    for path in ("/v1/eth", "/v1"):
        st, hdrs, body = preflight(pw.port, path, APP, req_headers="content-type")
        assert st == 405 and get(hdrs, "allow") == ["POST"], (path, st, hdrs)
        assert json.loads(body)["error"]["code"] == -32600, body
        assert cors_names(hdrs) == [], hdrs
    st, hdrs, _ = call(pw.port, "POST", "/v1/eth", {"Origin": APP}, CALL)
    assert st == 200 and cors_names(hdrs) == [] and get(hdrs, "vary") == [], hdrs


if __name__ == "__main__":
    pwtest.main()
