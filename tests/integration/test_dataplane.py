"""Dataplane: relaying over h1, h2c and https, routing, gateway errors, admin API, --check."""

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dp_util  # noqa: E402
import pwtest  # noqa: E402
from pwtest import test  # noqa: E402
from dp_util import Pathway, start_mock, mock_stats, wait_for, counters_at_zero  # noqa: E402

CALL = {"jsonrpc": "2.0", "id": 42, "method": "eth_chainId", "params": []}


def curl(*args, timeout=20):
    r = subprocess.run(["curl", "-s", "--max-time", "10", *args], capture_output=True, timeout=timeout)
    return r.returncode, r.stdout


@test
def test_relay_h1_path_and_header():
    _, up = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")])
    status, hdrs, body = pw.rpc("eth", CALL)
    assert status == 200, (status, body)
    assert body == {"jsonrpc": "2.0", "id": 42, "result": "0x1"}, body
    assert len(hdrs.get("x-request-id", "")) >= 8, hdrs
    status, hdrs, body = pw.rpc(path="/v1", body=CALL, headers={"Target-Service-Id": "eth", "X-Request-Id": "abc-123"})
    assert status == 200 and body["result"] == "0x1", (status, body)
    assert hdrs["x-request-id"] == "abc-123", hdrs
    # keep-alive reuse: many requests, few upstream connections
    for _ in range(20):
        assert pw.rpc("eth", CALL)[0] == 200
    assert mock_stats(up)["connections_total"] <= 4


@test
def test_batch_passes_through():
    _, up = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")])
    batch = [{"jsonrpc": "2.0", "id": i, "method": m} for i, m in enumerate(["eth_chainId", "eth_getBalance", "nope"])]
    status, _, body = pw.rpc("eth", batch)
    assert status == 200
    assert [r["id"] for r in body] == [0, 1, 2], body
    assert body[0]["result"] == "0x1" and body[2]["error"]["code"] == -32601, body


@test
def test_relay_h2c():
    _, up = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")])
    rc, out = curl("--http2-prior-knowledge", "-i", "-X", "POST", "-H", "content-type: application/json",
                   "--data", json.dumps(CALL), f"http://127.0.0.1:{pw.port}/v1/eth")
    assert rc == 0, rc
    text = out.decode()
    assert text.startswith("HTTP/2 200"), text
    assert '"result":"0x1"' in text and "x-request-id:" in text, text


@test
def test_relay_https_h2_alpn():
    _, up = start_mock()
    d = tempfile.mkdtemp(prefix="pw-dp-tls-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=60)
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")], tmpdir=d,
                 listen_extra=f"    tls:\n      certificate: {cert}\n      key: {key}")
    url = f"https://127.0.0.1:{pw.port}/v1/eth"
    rc, out = curl("-k", "--http2", "-i", "-X", "POST", "--data", json.dumps(CALL), url)
    assert rc == 0, rc
    assert out.decode().startswith("HTTP/2 200") and b'"result":"0x1"' in out, out
    rc, out = curl("-k", "--http1.1", "-i", "-X", "POST", "--data", json.dumps(CALL), url)
    assert rc == 0 and out.decode().startswith("HTTP/1.1 200"), out


@test
def test_https_upstream_verified_with_sni():
    d = tempfile.mkdtemp(prefix="pw-dp-up-tls-")
    cert, key = os.path.join(d, "up.pem"), os.path.join(d, "up.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=upstream.test", "-addext", "subjectAltName=DNS:upstream.test,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    _, up = start_mock("--tls-cert", cert, "--tls-key", key)
    url = f"https://127.0.0.1:{up}"
    pw = Pathway([
        ("ok", [url], ""),            # verified against ca_file, name from tls.server_name (also the SNI)
        ("byname", [f"https://localhost:{up}"], ""),  # the URL's host is the verified name
        ("system", [url], ""),        # the system store does not know this CA: 502
        ("noverify", [url], ""),      # verify: false
        ("wrongname", [url], ""),     # the CA is right, the name is not: 502
    ])
    text = pw.text()
    def with_tls(service, block):
        nonlocal text
        marker = f"  - id: {service}\n    endpoints:\n      - url: "
        i = text.index(marker) + len(marker)
        j = text.index("\n", i)
        text = text[:j] + "\n        tls:\n" + "".join(f"          {line}\n" for line in block) + text[j + 1:]
    with_tls("ok", [f"ca_file: {cert}", "server_name: upstream.test"])
    with_tls("byname", [f"ca_file: {cert}"])
    with_tls("noverify", ["verify: false"])
    with_tls("wrongname", [f"ca_file: {cert}", "server_name: other.test"])
    pw.write(text)
    st, _, body = pw.reload()
    assert st == 200, body
    for svc in ("ok", "byname", "noverify"):
        st, _, body = pw.rpc(svc, CALL)
        assert st == 200 and body["result"] == "0x1", (svc, st, body)
    for svc in ("system", "wrongname"):
        expect_error(pw.rpc(svc, CALL), 502, 42)
    assert pw.proc.alive()
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


def expect_error(resp, status, id_, code=None):
    st, hdrs, body = resp
    assert st == status, (st, body)
    assert body["jsonrpc"] == "2.0" and body["id"] == id_ and "message" in body["error"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    assert hdrs["content-type"] == "application/json", hdrs
    assert "x-request-id" in hdrs, hdrs
    return hdrs


@test
def test_every_error_status_has_a_jsonrpc_body():
    _, up = start_mock()
    _, hang = start_mock("--fault", "hang")
    _, slow = start_mock("--latency", "1500")
    dead = pwtest.free_port()  # nothing listens there
    pw = Pathway([
        ("eth", [f"http://127.0.0.1:{up}"], ""),
        ("dead", [f"http://127.0.0.1:{dead}"], ""),
        ("hang", [f"http://127.0.0.1:{hang}"], "timeouts:\n  request: 300ms"),
        ("slow", [f"http://127.0.0.1:{slow}"], "limiter:\n  max_concurrent: 1"),
    ], extra="limits:\n  max_request_body: 1KiB\nlimiter:\n  max_concurrent: 100\n  max_queue: 0\n  queue_timeout: 2s")
    call = {"jsonrpc": "2.0", "id": "req-7", "method": "eth_chainId"}
    expect_error(pw.rpc(path="/v1", body=call), 400, "req-7", -32600)
    expect_error(pw.rpc("nosuch", call), 404, "req-7")
    expect_error(pw.rpc(path="/other", body=call), 404, "req-7")
    st, hdrs, body = pwtest.request_json(pw.port, "GET", "/v1/eth")
    assert st == 405 and body["error"]["code"] == -32600, (st, body)
    big = {"jsonrpc": "2.0", "id": 9, "method": "eth_call", "params": ["x" * 2000]}
    expect_error(pw.rpc("eth", big), 413, 9)
    expect_error(pw.rpc("dead", call), 502, "req-7")
    t0 = time.time()
    expect_error(pw.rpc("hang", call), 504, "req-7", -32003)
    assert time.time() - t0 < 3, "504 should come after the 300ms request timeout"
    # service limiter of 1 with no queue: the second concurrent request is refused at once
    import threading
    first = []
    th = threading.Thread(target=lambda: first.append(pw.rpc("slow", call)))
    th.start()
    wait_for(lambda: pw.stats()["requests"]["active"] == 1, what="first slow request in flight")
    hdrs = expect_error(pw.rpc("slow", call), 503, "req-7", -32005)
    assert int(hdrs["retry-after"]) >= 1, hdrs
    th.join(10)
    assert first[0][0] == 200, first
    # gateway errors are counted and nothing is left in flight
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")
    s = pw.stats()
    assert s["requests"]["4xx"] >= 5 and s["requests"]["5xx"] >= 3, s["requests"]


@test
def test_upstream_reset_and_garbage_give_502():
    _, reset = start_mock("--fault", "reset")
    _, garbage = start_mock("--fault", "garbage")
    _, good = start_mock()
    pw = Pathway([("reset", [f"http://127.0.0.1:{reset}"], ""), ("garbage", [f"http://127.0.0.1:{garbage}"], ""),
                  ("eth", [f"http://127.0.0.1:{good}"], "")])
    for _ in range(5):
        expect_error(pw.rpc("reset", CALL), 502, 42)
        expect_error(pw.rpc("garbage", CALL), 502, 42)
    assert pw.proc.alive()
    assert pw.rpc("eth", CALL)[0] == 200
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


@test
def test_endpoint_choice_skips_failed_and_balances():
    _, a = start_mock()
    _, b = start_mock()
    dead = pwtest.free_port()
    pw = Pathway([("eth", [f"http://127.0.0.1:{a}", f"http://127.0.0.1:{b}", f"http://127.0.0.1:{dead}"], "")])
    results = [pw.rpc("eth", CALL)[0] for _ in range(30)]
    # a dead endpoint fails its pick, then is passed over for the next one
    assert results.count(502) <= 11, results
    assert mock_stats(a)["requests"] >= 8 and mock_stats(b)["requests"] >= 8, (mock_stats(a), mock_stats(b))


@test
def test_admin_endpoints():
    _, up = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")])
    assert pw.rpc("eth", CALL)[0] == 200
    assert pwtest.request(pw.admin, "GET", "/healthz")[0] == 200
    assert pwtest.request(pw.admin, "GET", "/ready")[0] == 200
    st, hdrs, text = pwtest.request(pw.admin, "GET", "/metrics")
    text = text.decode()
    assert st == 200
    for name in ["pathway_requests_total{service=\"eth\",class=\"2xx\"} 1", "pathway_request_duration_seconds_bucket",
                 "pathway_upstream_connections{", "pathway_upstream_connects_total", "pathway_upstream_reuses_total",
                 "pathway_limiter_inflight", "pathway_limiter_queued", "pathway_limiter_rejected_total",
                 "pathway_buffer_pool_hits_total", "pathway_buffer_pool_misses_total", "pathway_buffer_pool_retained_bytes",
                 "pathway_config_version 0", "pathway_config_generation 1", "pathway_config_info{hash=",
                 "pathway_config_applies_total", "process_resident_memory_bytes"]:
        assert name in text, name
    st, _, cfg = pwtest.request_json(pw.admin, "GET", "/config")
    assert st == 200 and cfg["version"] == 0 and cfg["generation"] == 1 and len(cfg["hash"]) == 64, cfg
    assert cfg["document"]["services"][0]["id"] == "eth", cfg
    st, _, body = dp_util.admin_post(pw.admin, "/logging?level=debug")
    assert st == 200 and body["level"] == "debug", body
    assert pw.stats()["log_level"] == "debug"
    st, _, body = dp_util.admin_post(pw.admin, "/logging?level=loud")
    assert st == 400, body
    assert pwtest.request(pw.admin, "GET", "/reload")[0] == 405
    assert pwtest.request(pw.admin, "POST", "/stats", {})[0] == 405
    assert pwtest.request(pw.admin, "GET", "/nope")[0] == 404


@test
def test_log_levels_and_access_log():
    _, up = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "")], extra="log:\n  level: info\n  access_log: true")
    assert pw.rpc("eth", CALL, headers={"X-Request-Id": "trace-1"})[0] == 200
    wait_for(lambda: "access service=eth status=200" in pw.proc.output(), what="access log line")
    assert "request_id=trace-1" in pw.proc.output()
    assert " debug: " not in pw.proc.output()
    assert dp_util.admin_post(pw.admin, "/logging?level=debug")[0] == 200
    pw.write(pw.text(services=[("eth", [f"http://127.0.0.1:{up}"], "pool:\n  max_idle_per_host: 4")],
                     extra="log:\n  level: debug\n  access_log: false"))
    assert pw.reload()[0] == 200
    n = pw.proc.output().count("access service=")
    assert pw.rpc("eth", CALL)[0] == 200
    wait_for(lambda: " debug: " in pw.proc.output(), what="debug lines")
    assert pw.proc.output().count("access service=") == n  # access_log off at runtime
    pw.write(pw.text(extra="log:\n  level: error"))
    assert pw.reload()[0] == 200
    before = pw.proc.output()
    assert pw.rpc("eth", CALL)[0] == 200
    time.sleep(0.2)
    assert pw.proc.output() == before, "nothing below error is written"


@test
def test_check_mode():
    d = tempfile.mkdtemp(prefix="pw-dp-check-")
    good = pwtest.write_file(d, "good.yaml", "services:\n  - id: eth\n    endpoints:\n      - url: http://127.0.0.1:1\n")
    r = subprocess.run([pwtest.binary("pathway"), "--check", "-c", good], capture_output=True, timeout=20)
    assert r.returncode == 0, r
    bad = pwtest.write_file(d, "bad.yaml", "limiter:\n  max_concurrent: -1\nbogus: 1\nservices: []\n")
    r = subprocess.run([pwtest.binary("pathway"), "--check", "-c", bad], capture_output=True, timeout=20)
    assert r.returncode == 1, r
    err = r.stderr.decode()
    assert "limiter.max_concurrent" in err and "bogus" in err, err
    assert len([line for line in err.splitlines() if line.strip()]) >= 2, err


if __name__ == "__main__":
    pwtest.main()
