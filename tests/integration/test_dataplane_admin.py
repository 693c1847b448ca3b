"""The dataplane's admin listener cannot be driven by a web page (issue 9): state-changing calls
are refused (403, JSON) when they carry an Origin header or lack Content-Type: application/json,
and change nothing; pathwayctl, curl and the tests send that header."""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dp_util  # noqa: E402
import pwtest  # noqa: E402
from dp_util import Pathway, start_mock  # noqa: E402
from pwtest import main, test  # noqa: E402


def refused(pw, path, headers, body=b"{}"):
    st, hdrs, data = pwtest.request(pw.admin, "POST", path, body, headers)
    assert st == 403, (path, headers, st, data)
    assert hdrs["content-type"].startswith("application/json"), hdrs
    return json.loads(data)["error"]


@test
def test_browser_shaped_mutations_are_refused():
    _, up = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")])
    pw.write(pw.text(extra="limiter:\n  max_concurrent: 5"))  # a reload would change something
    for path in ("/reload", "/logging?level=debug"):
        # what a page can send without a CORS preflight: form, text/plain, or no type at all
        assert "Content-Type" in refused(pw, path, {})
        assert "Content-Type" in refused(pw, path, {"Content-Type": "text/plain"})
        assert "Content-Type" in refused(pw, path, {"Content-Type": "application/x-www-form-urlencoded"}, b"a=b")
        assert "Content-Type" in refused(pw, path, {"Content-Type": "multipart/form-data; boundary=x"})
        # anything from a page at all: any Origin, even with the right type
        for origin in ("http://evil.example", "null", "http://127.0.0.1:9901"):
            assert "Origin" in refused(pw, path, {"Content-Type": "application/json", "Origin": origin})
    assert "Content-Type" in refused(pw, "/anything", {})
    st = pw.stats()
    assert st["generation"] == 1 and st["log_level"] == "info" and st["limiter"]["max_concurrent"] == 100, st
    # what pathwayctl and curl send
    st, _, body = dp_util.admin_post(pw.admin, "/reload")
    assert st == 200 and body["changed"] and body["generation"] == 2, body
    st, _, body = pwtest.request_json(pw.admin, "POST", "/logging?level=warn", b"",
                                      {"Content-Type": "application/json; charset=utf-8"})
    assert st == 200 and body["level"] == "warn", body
    # reads are unaffected
    assert pwtest.request(pw.admin, "GET", "/stats", headers={"Origin": "http://x.example"})[0] == 200


@test
def test_admin_token():
    _, up = start_mock()
    d = tempfile.mkdtemp(prefix="pw-dp-token-")
    token = "adm-" + os.urandom(8).hex()
    path = pwtest.write_file(d, "admin.token", token + "\n")
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")], tmpdir=d, admin_extra=f"  token_file: {path}")
    # /healthz and /ready stay open (probes carry no token)
    assert pwtest.request(pw.admin, "GET", "/healthz")[0] == 200
    assert pwtest.request(pw.admin, "GET", "/ready")[0] == 200
    for method, p in [("GET", "/metrics"), ("GET", "/stats"), ("GET", "/config"), ("POST", "/reload"),
                      ("POST", "/logging?level=debug"), ("GET", "/nope")]:
        for auth in (None, "Bearer wrong", f"Bearer {token}x", f"Basic {token}", token, "Bearer "):
            headers = {"Content-Type": "application/json"}
            if auth is not None:
                headers["Authorization"] = auth
            st, hdrs, body = pwtest.request(pw.admin, method, p, b"{}" if method == "POST" else None, headers)
            assert st == 401, (method, p, auth, st, body)
            assert json.loads(body)["ok"] is False and hdrs.get("www-authenticate", "").startswith("Bearer"), (body, hdrs)
    pw.admin_token = token
    assert pw.stats()["generation"] == 1
    assert "pathway_build_info" in pw.metrics()
    assert pw.reload()[0] == 200
    assert dp_util.admin_post(pw.admin, "/logging?level=warn", pw.admin_headers())[0] == 200
    # the token is no substitute for the browser guard
    assert pwtest.request(pw.admin, "POST", "/reload", {}, {**pw.admin_headers(), "Origin": "http://x.example"})[0] == 403


@test
def test_unreadable_admin_token_file_stops_the_start():
    d = tempfile.mkdtemp(prefix="pw-dp-token-")
    for name, content, why in [("missing.token", None, "cannot open"), ("empty.token", "", "must hold one token on one line"),
                               ("two-lines.token", "a\nb\n", "must hold one token on one line")]:
        path = os.path.join(d, name)
        if content is not None:
            pwtest.write_file(d, name, content)
        text = dp_util.config_text([("eth", ["http://127.0.0.1:1"], "")], pwtest.free_port(), pwtest.free_port(),
                                   admin_extra=f"  token_file: {path}")
        cfg = pwtest.write_file(d, f"{name}.yaml", text)
        r = subprocess.run([pwtest.binary("pathway"), "-c", cfg], capture_output=True, timeout=20)
        assert r.returncode != 0, (name, r)
        assert f"admin.token_file {path}: {why}" in r.stderr.decode(), (name, r.stderr)


if __name__ == "__main__":
    main()
