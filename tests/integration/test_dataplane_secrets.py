"""Secrets never leak from a dataplane (issue 9): an API key planted in an endpoint URL's path,
query and userinfo and in an endpoint header appears in no output surface (/metrics, /stats,
/config, /reload answers, the process log), also when the endpoint fails and errors are logged.
Endpoints are named by `name`, else host:port; the key still reaches the upstream."""

import base64
import os
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dp_util  # noqa: E402
import pwtest  # noqa: E402
from dp_util import Pathway, RawUpstream, wait_for  # noqa: E402
from pwtest import main, test  # noqa: E402

BODY = b'{"jsonrpc":"2.0","id":1,"result":"0x1"}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


@test
def test_planted_key_appears_nowhere():
    key = "KEY" + secrets.token_hex(8)
    up = RawUpstream(lambda sock, i: sock.sendall(ANSWER) or True)
    dead = pwtest.free_port()  # nothing listens: connect errors are logged
    url = f"http://user:{key}U@127.0.0.1:{up.port}/v2/{key}P?apikey={key}Q"
    dead_url = f"http://127.0.0.1:{dead}/v3/{key}D?k={key}E"
    pw = Pathway([("eth", [f"http://127.0.0.1:{up.port}"], "")], threads=1)
    # retries off, so some requests fail on the dead endpoint and its error is logged
    pw.write(pw.text(services=[("eth", [url, dead_url], "retry: {max_attempts: 1}")])
             .replace(f"      - url: {url}\n", f"      - url: {url}\n        headers: {{X-Api-Key: {key}H}}\n")
             .replace(f"      - url: {dead_url}\n", f"      - url: {dead_url}\n        name: backup\n"))
    st, _, body = pw.reload()
    assert st == 200 and body["changed"], body
    assert dp_util.admin_post(pw.admin, "/logging?level=debug")[0] == 200
    statuses = [pw.rpc("eth")[0] for _ in range(12)]
    assert 200 in statuses and 502 in statuses, statuses
    wait_for(lambda: "connect failed" in pw.proc.output(), what="a connect error logged")
    # the key still reaches the upstream: path, query, header and Basic userinfo
    head = up.heads[0].decode()
    assert f"POST /v2/{key}P?apikey={key}Q HTTP/1.1" in head, head
    assert f"x-api-key: {key.lower()}h\r\n" in head.lower(), head
    assert "authorization: basic " + base64.b64encode(f"user:{key}U".encode()).decode().lower() in head.lower(), head
    # a reload that fails on this endpoint says which one without the URL
    bad_url = f"https://u:{key}S@127.0.0.1:1/{key}T"
    bad = pw.text(services=[("eth", [bad_url], "")]).replace(
        f"      - url: {bad_url}\n", f"      - url: {bad_url}\n        tls: {{ca_file: /nonexistent/ca.pem}}\n")
    good = open(pw.path).read()
    pw.write(bad)
    st, _, failed = pwtest.request(pw.admin, "POST", "/reload", {})
    assert st == 400, failed
    pw.write(good)

    surfaces = {
        "/metrics": pw.metrics(),
        "/stats": pwtest.request(pw.admin, "GET", "/stats")[2].decode(),
        "/config": pwtest.request(pw.admin, "GET", "/config")[2].decode(),
        "/reload (failed)": failed.decode(),
        "log": pw.proc.output(),
    }
    for where, text in surfaces.items():
        assert key not in text, f"{where} shows the key:\n{text[:3000]}"
    # names, not URLs
    assert f'endpoint="127.0.0.1:{up.port}"' in surfaces["/metrics"]
    assert 'endpoint="backup"' in surfaces["/metrics"]
    assert "<redacted>" in surfaces["/config"]
    names = [e["name"] for e in pw.stats()["services"][0]["endpoints"]]
    assert names == [f"127.0.0.1:{up.port}", "backup"], names
    up.close()


if __name__ == "__main__":
    main()
