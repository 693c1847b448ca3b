"""The dataplane's admin listener cannot be driven by a web page (issue 9): state-changing calls
are refused (403, JSON) when they carry an Origin header or lack Content-Type: application/json,
and change nothing; pathwayctl, curl and the tests send that header."""

import json
import os
import sys

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


if __name__ == "__main__":
    main()
