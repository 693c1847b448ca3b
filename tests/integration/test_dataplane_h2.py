"""Upstream HTTP/2 (pool.protocol): relays over h2 with prior knowledge (nginx `listen ... http2`) and
over TLS with ALPN (h2o), many requests multiplexed on one connection, GOAWAY under load, a 50 MiB
response with bounded RSS, and a runtime switch http1 -> h2. nginx and h2o proxy to
pathway-mock-upstream; everything is on 127.0.0.1 and bounded in count and time."""

import concurrent.futures
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402
from pwtest import test  # noqa: E402
from dp_util import Pathway, start_mock, wait_for, counters_at_zero, promtool_check, vm_hwm_kib  # noqa: E402

MiB = 1024 * 1024
CALL = {"jsonrpc": "2.0", "id": 7, "method": "eth_blockNumber", "params": []}


def nginx(upstream_port, http2=True, tls=None, extra_server="", extra_http=""):
    """nginx on a free port proxying to the mock over HTTP/1.1 keep-alive; returns (port, dir). Its
    access log (dir/access.log) records nginx's connection serial number of each request. One
    process (no master), so stopping or killing it leaves no worker behind."""
    d = tempfile.mkdtemp(prefix="pw-h2-nginx-")
    port = pwtest.free_port()
    listen = f"127.0.0.1:{port}" + (" ssl" if tls else "") + (" http2" if http2 else "")
    ssl = f"ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]};" if tls else ""
    conf = f"""
worker_processes 1;
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 2048; }}
http {{
  log_format conn '$connection $status $request_length';
  access_log {d}/access.log conn;
  client_body_temp_path {d}/cb; proxy_temp_path {d}/pt; fastcgi_temp_path {d}/ft;
  uwsgi_temp_path {d}/ut; scgi_temp_path {d}/st;
  http2_max_concurrent_streams 128;
  upstream mock {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  {extra_http}
  server {{
    listen {listen};
    {ssl}
    {extra_server}
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""
    path = pwtest.write_file(d, "nginx.conf", conf)
    pwtest.Proc(["nginx", "-c", path, "-p", d], name=f"nginx-{port}")
    pwtest.wait_port(port)
    return port, d


def nginx_connections(d):
    """The distinct connections nginx served requests on (from its access log)."""
    with open(os.path.join(d, "access.log")) as f:
        return {line.split()[0] for line in f if line.strip()}


def h2o_tls(upstream_port, cert, key):
    """h2o 2.2.5 with TLS (ALPN h2 and http/1.1) proxying to the mock; returns its port."""
    d = tempfile.mkdtemp(prefix="pw-h2-h2o-")
    port = pwtest.free_port()
    conf = f"""listen:
  host: 127.0.0.1
  port: {port}
  ssl:
    certificate-file: {cert}
    key-file: {key}
    ocsp-update-interval: 0
hosts:
  default:
    paths:
      /:
        proxy.reverse.url: http://127.0.0.1:{upstream_port}/
"""
    path = pwtest.write_file(d, "h2o.conf", conf)
    pwtest.Proc(["h2o", "-c", path], name=f"h2o-{port}")
    pwtest.wait_port(port)
    return port


def make_cert():
    d = tempfile.mkdtemp(prefix="pw-h2-tls-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def post(port, path, body, timeout=20.0):
    """POST raw bytes; returns (status, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def endpoint(pw, service):
    for s in pw.stats()["services"]:
        if s["id"] == service:
            return s["endpoints"][0]
    raise KeyError(service)


def concurrent_posts(port, path, n, workers=None):
    """n requests at once (distinct ids); returns the list of (status, body)."""
    def one(i):
        body = json.dumps({"jsonrpc": "2.0", "id": i, "method": "eth_blockNumber", "params": []})
        try:
            return post(port, path, body)
        except OSError as e:
            return 0, str(e).encode()
    with concurrent.futures.ThreadPoolExecutor(workers or n) as ex:
        return list(ex.map(one, range(n)))


@test
def test_h2_prior_knowledge_byte_identical():
    _, mock = start_mock()
    ng, _ = nginx(mock)
    svc = "pool:\n  protocol: h2"
    pw = Pathway([("h2", [f"http://127.0.0.1:{ng}/"], svc), ("h1", [f"http://127.0.0.1:{ng + 0}/"], "")], threads=1)
    bodies = [json.dumps(CALL), json.dumps([CALL, dict(CALL, id=8, method="eth_chainId")]),
              json.dumps({"jsonrpc": "2.0", "id": 9, "method": "eth_getBalance", "params": ["0x" + "ab" * 20, "latest"]})]
    for b in bodies:
        direct = post(mock, "/", b)
        via = post(pw.port, "/v1/h2", b)
        assert via == direct, (b, via, direct)
    ep = endpoint(pw, "h2")
    assert ep["protocol"] == "h2" and ep["protocol_in_use"] == "h2" and ep["h2_connects"] == 1, ep
    assert ep["attempts"]["ok"] == len(bodies), ep
    # the http1 service on the same nginx (nginx accepts HTTP/1.1 on an http2 port only by upgrade; it
    # does not here) gets a clear 502, not a hang
    st, _ = post(pw.port, "/v1/h1", bodies[0])
    assert st == 502, st
    text = pw.metrics()
    assert 'pathway_upstream_streams{service="h2",endpoint="127.0.0.1:%d"} 0' % ng in text, text
    assert 'pathway_upstream_h2_connections{service="h2",endpoint="127.0.0.1:%d"} 1' % ng in text
    promtool_check(text)
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


@test
def test_h2_body_without_length_and_failover():
    # an answer without content-length (nginx relays the mock's chunked body as DATA frames up to
    # END_STREAM) comes through whole; and when one h2 upstream dies under load, its streams fail
    # over to the other endpoint: no client sees an error
    _, chunked = start_mock("--response-size", "100000", "--chunked")
    ng_c, _ = nginx(chunked)
    _, mock = start_mock("--latency", "20")
    ng_a, _ = nginx(mock)
    ng_b, _ = nginx(mock)
    pw = Pathway([("c", [f"http://127.0.0.1:{ng_c}/"], "pool:\n  protocol: h2"),
                  # every stream of the dead connection fails at once: the retry budget is opened for
                  # that burst (its default, 20% of the requests in flight, is what HTTP/1.1 would get too)
                  ("eth", [f"http://127.0.0.1:{ng_a}/", f"http://127.0.0.1:{ng_b}/"],
                   "pool:\n  protocol: h2\nretry:\n  budget:\n    percent: 100")],
                 threads=1)
    call = '{"jsonrpc":"2.0","id":3,"method":"eth_call","params":[]}'
    st, body = post(pw.port, "/v1/c", call)
    assert (st, body) == post(chunked, "/", call) and len(body) > 100000, (st, len(body))
    assert concurrent_posts(pw.port, "/v1/eth", 40, workers=20)  # both connections up
    victim = next(p for p in pwtest.Proc.live if p.name == f"nginx-{ng_a}")
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        load = ex.submit(concurrent_posts, pw.port, "/v1/eth", 600, 30)
        time.sleep(0.15)
        victim.kill9()
        res = load.result(timeout=60)
    bad = [r for r in res if r[0] != 200 or b'"result"' not in r[1]]
    assert not bad, (len(bad), bad[:3])
    svc = next(x for x in pw.stats()["services"] if x["id"] == "eth")
    a = svc["endpoints"][0]["attempts"]
    assert a["reset"] + a["connect_failure"] + a["bad_response"] >= 1, a  # it died with streams open
    assert sum(svc["retries"].values()) >= 1, svc["retries"]
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


@test
def test_h2_tls_alpn_auto_and_h2():
    cert, key = make_cert()
    _, mock = start_mock()
    up = h2o_tls(mock, cert, key)
    ng_h1, _ = nginx(mock, http2=False, tls=(cert, key))  # TLS, ALPN http/1.1 only
    def ep(port, proto):  # an endpoint with its own tls and protocol (lines under its url)
        return f"https://127.0.0.1:{port}/\n        tls: {{ca_file: {cert}}}\n        protocol: {proto}"
    pw = Pathway([("auto", [ep(up, "auto")], ""), ("h2", [ep(up, "h2")], ""), ("fallback", [ep(ng_h1, "auto")], ""),
                  ("strict", [ep(ng_h1, "h2")], "")], threads=1)
    b = json.dumps(CALL)
    direct = post(mock, "/", b)
    for sid in ["auto", "h2", "fallback"]:
        for _ in range(3):
            assert post(pw.port, f"/v1/{sid}", b) == direct, sid
    assert endpoint(pw, "auto")["protocol_in_use"] == "h2"
    assert endpoint(pw, "h2")["protocol_in_use"] == "h2"
    fb = endpoint(pw, "fallback")
    assert fb["protocol_in_use"] == "http1" and fb["h2_connects"] == 0, fb
    # protocol h2 on an upstream that does not select h2 by ALPN: a connect failure, said in the log
    st, body = post(pw.port, "/v1/strict", b)
    assert st == 502 and b"connect failed" in body, (st, body)
    assert endpoint(pw, "strict")["connect_errors"] >= 1
    assert "did not select h2 by ALPN" in pw.proc.output()
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


@test
def test_200_concurrent_on_one_connection():
    _, mock = start_mock("--latency", "20")
    ng, ngdir = nginx(mock)
    over = "pool:\n  protocol: h2\n  max_conns_per_host: 1"
    pw = Pathway([("eth", [f"http://127.0.0.1:{ng}/"], over)], threads=1)
    res = concurrent_posts(pw.port, "/v1/eth", 200)
    bad = [r for r in res if r[0] != 200 or b'"result"' not in r[1]]
    assert not bad, bad[:3]
    ep = endpoint(pw, "eth")
    assert ep["connects"] == 1 and ep["h2_connects"] == 1, ep
    assert ep["attempts"]["ok"] == 200, ep
    assert len(nginx_connections(ngdir)) == 1, nginx_connections(ngdir)
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


@test
def test_full_connection_opens_another():
    # 5 streams per connection, 4 connections allowed: 20 requests at once use all 4 in one round
    # (requests that wait for a stream open another connection while the upstream has a free slot)
    _, mock = start_mock("--latency", "300")
    ng, ngdir = nginx(mock)
    over = "pool:\n  protocol: h2\n  max_conns_per_host: 4\n  max_concurrent_streams: 5"
    pw = Pathway([("eth", [f"http://127.0.0.1:{ng}/"], over)], threads=1)
    t = time.time()
    res = concurrent_posts(pw.port, "/v1/eth", 20)
    took = time.time() - t
    assert all(r[0] == 200 for r in res), res[:3]
    ep = endpoint(pw, "eth")
    assert ep["h2_connects"] == 4 and ep["connects"] == 4 and ep["max_concurrent_streams"] == 5, ep
    assert len(nginx_connections(ngdir)) == 4
    assert took < 1.0, took  # one round of 300 ms, not four
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


@test
def test_goaway_mid_load_fails_nothing():
    _, mock = start_mock("--latency", "5")
    # nginx ends an h2 connection with GOAWAY after 50 requests on it
    ng, ngdir = nginx(mock, extra_http="keepalive_requests 50;")
    over = "pool:\n  protocol: h2\n  max_conns_per_host: 2"
    pw = Pathway([("eth", [f"http://127.0.0.1:{ng}/"], over)], threads=1)
    failed = 0
    for _ in range(4):
        res = concurrent_posts(pw.port, "/v1/eth", 120, workers=60)
        failed += sum(1 for r in res if r[0] != 200 or b'"result"' not in r[1])
    assert failed == 0, failed
    ep = endpoint(pw, "eth")
    assert ep["goaways"] >= 5, ep
    assert ep["attempts"]["ok"] == 480, ep
    assert len(nginx_connections(ngdir)) >= 9  # 480 requests, 50 per connection
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")
    wait_for(lambda: endpoint(pw, "eth")["streams"] == 0, what="no stream open")


@test
def test_50mib_over_h2_slow_client_bounded_rss():
    size = 50 * MiB
    _, mock = start_mock("--response-size", str(size))
    ng, _ = nginx(mock)
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=4"}
    pw = Pathway([("eth", [f"http://127.0.0.1:{ng}/"], "pool:\n  protocol: h2")],
                 extra="limits:\n  max_response_body: 100MiB", env=env, threads=1)
    st, _ = post(pw.port, "/v1/eth", '[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}]')  # warm up (batch: short)
    assert st == 200
    base_hwm = vm_hwm_kib(pw.proc.p.pid)
    conn = http.client.HTTPConnection("127.0.0.1", pw.port, timeout=60)
    conn.request("POST", "/v1/eth", body='{"jsonrpc":"2.0","id":3,"method":"eth_call"}')
    r = conn.getresponse()
    total, head, tail = 0, b"", b""
    while True:
        chunk = r.read(256 * 1024)
        if not chunk:
            break
        head = head or chunk[:64]
        tail = (tail + chunk)[-16:]
        total += len(chunk)
        time.sleep(0.002)
    conn.close()
    assert r.status == 200
    assert head.startswith(b'{"jsonrpc":"2.0","id":3,"result":"0xaaaa'), head
    assert tail.endswith(b'aaaa"}'), tail
    assert total == size + len('{"jsonrpc":"2.0","id":3,"result":"0x"}'), total
    grown = vm_hwm_kib(pw.proc.p.pid) - base_hwm
    assert grown < 8 * 1024, f"peak RSS grew by {grown} KiB"
    assert endpoint(pw, "eth")["protocol_in_use"] == "h2"
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


@test
def test_timeout_and_client_cancel_reset_the_stream():
    _, mock = start_mock("--fault", "hang", "--fault-method", "eth_call")
    ng, ngdir = nginx(mock)
    over = "pool:\n  protocol: h2\ntimeouts:\n  request: 300ms\nretry:\n  max_attempts: 1"
    pw = Pathway([("eth", [f"http://127.0.0.1:{ng}/"], over)], threads=1)
    hang = '{"jsonrpc":"2.0","id":5,"method":"eth_call","params":[]}'
    t = time.time()
    st, body = post(pw.port, "/v1/eth", hang)
    assert st == 504 and time.time() - t < 3, (st, body)
    # the stream was reset (RST_STREAM CANCEL), the connection carries on
    wait_for(lambda: endpoint(pw, "eth")["streams"] == 0, what="the timed-out stream closed")
    assert post(pw.port, "/v1/eth", json.dumps(CALL)) == post(mock, "/", json.dumps(CALL))
    # a client that leaves: its stream is reset too (nginx logs 499 for a stream its client reset)
    c = http.client.HTTPConnection("127.0.0.1", pw.port, timeout=5)
    c.request("POST", "/v1/eth", body=hang.replace("300ms", ""))
    wait_for(lambda: endpoint(pw, "eth")["streams"] == 1, what="the stream open")
    c.close()
    wait_for(lambda: endpoint(pw, "eth")["streams"] == 0, what="the abandoned stream reset")
    ep = endpoint(pw, "eth")
    assert ep["h2_connects"] == 1 and ep["connects"] == 1, ep
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")
    with open(os.path.join(ngdir, "access.log")) as f:
        statuses = [line.split()[1] for line in f if line.strip()]
    assert statuses.count("499") == 2 and statuses.count("200") == 1, statuses


@test
def test_h2_connect_timeout_fails_the_waiters_together():
    # a TLS upstream that never answers the handshake: every request waits for the one HTTP/2
    # connection being opened; when its connect times out they all fail over at once, not one
    # connect_timeout after another
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    try:
        over = "pool:\n  protocol: h2\n  connect_timeout: 400ms\nretry:\n  max_attempts: 1"
        pw = Pathway([("eth", [f"https://127.0.0.1:{port}/"], over)], threads=1)
        t = time.time()
        res = concurrent_posts(pw.port, "/v1/eth", 20)
        took = time.time() - t
        assert all(r[0] == 502 and b"connect failed" in r[1] for r in res), res[:3]
        assert took < 2.5, took  # 20 connect timeouts in a row would take 8 s
        ep = endpoint(pw, "eth")
        assert ep["connect_errors"] <= 2, ep
        wait_for(lambda: counters_at_zero(pw), what="counters at zero")
    finally:
        silent.close()


@test
def test_runtime_switch_http1_to_h2():
    _, mock = start_mock()
    ng_h1, _ = nginx(mock, http2=False)
    ng_h2, _ = nginx(mock)
    # one service, two nginx: the same endpoint keys across the reload, only pool.protocol changes;
    # nginx's h2 port speaks only h2, its other only HTTP/1.1, so the answers prove the protocol
    pw = Pathway([("a", [f"http://127.0.0.1:{ng_h2}/"], "")], threads=1)
    b = json.dumps(CALL)
    assert post(pw.port, "/v1/a", b)[0] == 502  # http1 against an h2-only port
    pw.services = [("a", [f"http://127.0.0.1:{ng_h2}/"], "pool:\n  protocol: h2")]
    pw.write()
    st, _, _ = pw.reload()
    assert st == 200, st
    wait_for(lambda: endpoint(pw, "a")["protocol"] == "h2", what="protocol h2 applied")
    assert post(pw.port, "/v1/a", b) == post(mock, "/", b)
    ep = endpoint(pw, "a")
    assert ep["protocol_in_use"] == "h2" and ep["h2_connects"] == 1, ep
    # and back: h2 connections are not reused for http1 once they are gone (idle_timeout 100ms)
    pw.services = [("a", [f"http://127.0.0.1:{ng_h1}/"], "pool:\n  protocol: http1")]
    pw.write()
    assert pw.reload()[0] == 200
    assert post(pw.port, "/v1/a", b) == post(mock, "/", b)
    wait_for(lambda: counters_at_zero(pw), what="counters at zero")


if __name__ == "__main__":
    pwtest.main()
