"""pathway-mock-upstream's chain head (--block-time, --lag, --start-block) and its control listener
(--control-port): what the health tests rely on to turn an endpoint bad and good while it runs."""

import http.client
import json
import socket
import time

import pwtest

CHAIN_ID = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
BLOCK_NUMBER = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}


def start(*args, refuse=False):
    """A mock with a control listener; returns (proc, port, control_port)."""
    port, control = pwtest.free_port(), pwtest.free_port()
    p = pwtest.Proc([pwtest.binary("pathway-mock-upstream"), "--port", str(port), "--control-port", str(control), *args],
                    name=f"mock-{port}")
    pwtest.wait_port(control)
    if not refuse:
        pwtest.wait_port(port)
    return p, port, control


def control(port, body=None, path="/control"):
    if body is None:
        return pwtest.request_json(port, "GET", path)
    return pwtest.request_json(port, "POST", path, body)


def head(port):
    status, _, body = pwtest.request_json(port, "POST", "/", BLOCK_NUMBER)
    assert status == 200 and body["result"].startswith("0x"), (status, body)
    return int(body["result"], 16)


def refused(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


@pwtest.test
def test_head_stays_without_block_time():
    _, port, _ = start()
    assert head(port) == 0x1000000 and head(port) == 0x1000000
    _, port, _ = start("--start-block", "0x10", "--lag", "20")
    assert head(port) == 0, "a lag beyond the head answers 0, not a wrapped number"


@pwtest.test
def test_blocks_and_receipts_follow_the_head():
    """Like a node: a block above the head is null, a tag is the head; a receipt is null until its
    block (the hash's last 16 hex digits) is mined, then names that block."""
    _, port, _ = start("--block-time", "100", "--start-block", "1000")

    def rpc(method, params):
        status, _, body = pwtest.request_json(port, "POST", "/", {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        assert status == 200, status
        return body["result"]

    h = head(port)
    assert rpc("eth_getBlockByNumber", [hex(10), False])["number"] == "0xa"
    assert rpc("eth_getBlockByNumber", [hex(10), False]) == rpc("eth_getBlockByNumber", ["0xa", False])
    assert rpc("eth_getBlockByNumber", [hex(11), False])["hash"] != rpc("eth_getBlockByNumber", [hex(10), False])["hash"]
    assert rpc("eth_getBlockByNumber", [hex(h + 50), False]) is None
    assert int(rpc("eth_getBlockByNumber", ["latest", False])["number"], 16) >= h
    tx = "0x" + "cd" * 24 + "%016x" % (h + 3)
    assert rpc("eth_getTransactionReceipt", [tx]) is None
    time.sleep(0.6)
    r = rpc("eth_getTransactionReceipt", [tx])
    assert r["blockNumber"] == hex(h + 3) and r["transactionHash"] == tx, r


@pwtest.test
def test_head_advances_and_lags():
    _, port, ctl = start("--block-time", "100", "--start-block", "1000")
    t0 = time.time()
    h0 = head(port)
    time.sleep(0.55)
    h1 = head(port)
    elapsed = time.time() - t0
    assert 1000 <= h0 <= 1002, h0
    assert 4 <= h1 - h0 <= elapsed / 0.1 + 1, (h0, h1, elapsed)
    _, _, s = control(ctl, {"lag": 20})
    assert s["lag"] == 20
    h2 = head(port)
    assert h1 - 20 <= h2 <= h1 - 20 + 3, (h1, h2)
    # stopping the clock keeps the head where it got to (no jump back to --start-block)
    control(ctl, {"lag": 0, "block_time_ms": 0})
    h3 = head(port)
    time.sleep(0.3)
    assert head(port) == h3 and h3 >= h1, (h1, h3)
    _, _, full = control(ctl)
    assert full["head"] == h3 and full["block_time_ms"] == 0, full


@pwtest.test
def test_counters_by_method():
    _, port, ctl = start()
    for _ in range(3):
        pwtest.request_json(port, "POST", "/", CHAIN_ID)
    pwtest.request_json(port, "POST", "/", BLOCK_NUMBER)
    pwtest.request_json(port, "POST", "/", [CHAIN_ID, BLOCK_NUMBER, {"jsonrpc": "2.0", "id": 3, "method": "net_version"}])
    pwtest.request_json(port, "GET", "/stats")  # not a JSON-RPC request: not counted
    status, _, s = control(ctl)
    assert status == 200, status
    assert s["requests"] == 5, s
    assert s["by_method"] == {"eth_chainId": 4, "eth_blockNumber": 2, "net_version": 1}, s
    status, _, s = control(ctl, {}, "/control/reset-counters")
    assert status == 200 and s["requests"] == 0 and s["by_method"] == {}, (status, s)
    pwtest.request_json(port, "POST", "/", CHAIN_ID)
    _, _, s = control(ctl)
    assert s["requests"] == 1 and s["by_method"] == {"eth_chainId": 1}, s


@pwtest.test
def test_control_changes_answers():
    _, port, ctl = start()
    status, _, s = control(ctl, {"status": 429, "status_rate": 0.5})
    assert status == 200 and s["status"] == 429 and s["status_rate"] == 0.5, (status, s)
    codes = [pwtest.request_json(port, "POST", "/", CHAIN_ID)[0] for _ in range(200)]
    n429 = codes.count(429)
    assert set(codes) == {200, 429} and 60 <= n429 <= 140, (n429, set(codes))
    control(ctl, {"status": 200})
    assert pwtest.request_json(port, "POST", "/", CHAIN_ID)[0] == 200
    control(ctl, {"error_rate": 1, "error_code": -32005})
    status, _, body = pwtest.request_json(port, "POST", "/", CHAIN_ID)
    assert status == 200 and body["error"]["code"] == -32005, body
    control(ctl, {"error_rate": 0, "latency_ms": 300})
    t0 = time.time()
    status, _, body = pwtest.request_json(port, "POST", "/", CHAIN_ID)
    assert status == 200 and body["result"] == "0x1" and time.time() - t0 >= 0.29, (status, body)
    control(ctl, {"latency_ms": 0, "fault": "reset"})
    try:
        pwtest.request_json(port, "POST", "/", CHAIN_ID)
        raise AssertionError("fault reset: the request was answered")
    except (ConnectionError, http.client.HTTPException):
        pass
    _, _, s = control(ctl, {"fault": "none"})
    assert s["fault"] == "none"
    assert pwtest.request_json(port, "POST", "/", CHAIN_ID)[0] == 200


@pwtest.test
def test_refuse_and_reopen():
    _, port, ctl = start()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("POST", "/", json.dumps(CHAIN_ID), {"Content-Type": "application/json"})
    assert conn.getresponse().read()
    status, _, s = control(ctl, {"fault": "refuse"})
    assert status == 200 and s["fault"] == "refuse", (status, s)
    assert refused(port), "connects to a refusing mock must get ECONNREFUSED"
    # a pooled keep-alive connection is reset too, as a dead process's would be
    try:
        conn.request("POST", "/", json.dumps(CHAIN_ID), {"Content-Type": "application/json"})
        conn.getresponse().read()
        raise AssertionError("a kept connection still answered while refusing")
    except (ConnectionError, http.client.HTTPException):
        pass
    # the control listener keeps working; counters still read
    status, _, s = control(ctl)
    assert status == 200 and s["requests"] == 1, (status, s)
    status, _, s = control(ctl, {"fault": "none"})
    assert status == 200 and s["fault"] == "none"
    assert pwtest.request_json(port, "POST", "/", CHAIN_ID)[0] == 200
    # refusing from the start, reopened on the same port
    _, port, ctl = start("--refuse", refuse=True)
    assert refused(port)
    control(ctl, {"fault": "none"})
    assert pwtest.request_json(port, "POST", "/", CHAIN_ID)[0] == 200


@pwtest.test
def test_bad_control_bodies():
    _, port, ctl = start()
    _, _, before = control(ctl, {})
    for body, word in [({"latency": 5}, '"latency"'), ({"lag": -1}, "lag"), ({"fault_rate": 2}, "fault_rate"),
                       ({"fault": "explode"}, "fault"), ({"status": 99}, "status"), ({"status_rate": "x"}, "status_rate"),
                       ({"block_time_ms": 1.5}, "block_time_ms"), ([1], "body"), ({"lag": 3, "bogus": 1}, '"bogus"')]:
        status, _, err = control(ctl, body)
        assert status == 400 and word in err["error"], (body, status, err)
    status, _, err = pwtest.request(ctl, "POST", "/control", b"{not json")
    assert status == 400 and b"not JSON" in err, (status, err)
    _, _, after = control(ctl, {})
    assert after == before, "a rejected body must change nothing"
    assert pwtest.request(ctl, "GET", "/other")[0] == 404
    # the mock is still alive and answering
    assert pwtest.request_json(port, "POST", "/", CHAIN_ID)[0] == 200

def concurrent_calls(port, bodies):
    """Sends each body on its own connection at once; returns each call's latency (s), in order."""
    import threading
    out = [None] * len(bodies)

    def one(i):
        t0 = time.time()
        status, _, _ = pwtest.request_json(port, "POST", "/", bodies[i])
        assert status == 200, status
        out[i] = time.time() - t0

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@pwtest.test
def test_capacity_model():
    """--capacity K --service-time T: K requests are served at once, the rest wait inside the mock,
    so 8 concurrent requests on K = 4, T = 100 ms take 100 and 200 ms; K raised through the control
    call serves them all at once; --method-time gives one method its own service time."""
    _, port, ctl = start("--capacity", "4", "--service-time", "100", "--method-time", "eth_getLogs=300")
    lat = sorted(concurrent_calls(port, [CHAIN_ID] * 8))
    assert lat[0] >= 0.09 and lat[-1] >= 0.19, lat
    _, _, stats = pwtest.request_json(port, "GET", "/stats")
    assert stats["peak_busy"] == 4 and stats["peak_queued"] == 4 and stats["answered"] == 8, stats
    # the mock's own timing (arrival to answer): four waited for a worker (how long depends on when
    # each arrived), four did not
    waited = sum(n for ms, n in stats["latency_ms"] if ms >= 130)
    assert waited >= 4, stats["latency_ms"]
    status, _, doc = control(ctl, {"capacity": 8})
    assert status == 200 and doc["capacity"] == 8 and doc["service_time_ms"] == 100, doc
    concurrent_calls(port, [CHAIN_ID] * 8)
    # none of these waited for a worker: the mock's own timing (arrival to answer, which the
    # client's threads on a busy machine do not stretch) has no more answers of 190 ms or more
    _, _, stats = pwtest.request_json(port, "GET", "/stats")
    assert stats["peak_queued"] == 4 and stats["answered"] == 16, stats
    assert sum(n for ms, n in stats["latency_ms"] if ms >= 190) <= waited, stats["latency_ms"]
    logs = {"jsonrpc": "2.0", "id": 2, "method": "eth_getLogs", "params": []}
    assert concurrent_calls(port, [logs])[0] >= 0.29
    status, _, doc = control(ctl, {"service_time_ms": 0, "capacity": 0})
    assert status == 200 and doc["capacity"] == 0
    for body, word in [({"capacity": -1}, "capacity"), ({"capacity": "8"}, "capacity"), ({"service_time_ms": 1.5}, "service_time_ms")]:
        status, _, err = control(ctl, body)
        assert status == 400 and word in err["error"], (body, status, err)


@pwtest.test
def test_capacity_queue_drains_when_raised():
    """Requests waiting inside the mock start at once when K is raised (not one service time later)."""
    import threading
    _, port, ctl = start("--capacity", "1", "--service-time", "400")
    res = []
    t = threading.Thread(target=lambda: res.append(concurrent_calls(port, [CHAIN_ID] * 3)))
    t.start()
    time.sleep(0.1)
    assert control(ctl)[2]["queued"] == 2
    control(ctl, {"capacity": 3})
    t.join()
    assert max(res[0]) < 0.75, res  # queued ones started at ~0.1 s: done by ~0.5 s, not 0.8 / 1.2 s


@pwtest.test
def test_bad_flags():
    for args, word in [(["--block-time", "soon"], "--block-time"), (["--lag", "-3"], "--lag"),
                       (["--status-rate", "1.5"], "--status-rate"), (["--control-port", "0"], "--control-port"),
                       (["--start-block", "0xq"], "--start-block"), (["--fault", "refused"], "--fault"),
                       (["--capacity", "x"], "--capacity"), (["--method-time", "eth_call"], "--method-time"),
                       (["--method-time", "eth_call=soon"], "--method-time")]:
        p = pwtest.Proc([pwtest.binary("pathway-mock-upstream"), "--port", str(pwtest.free_port()), *args], name="mock-bad")
        rc = p.p.wait(10)
        assert rc == 2 and word in p.output(), (args, rc, p.output())


if __name__ == "__main__":
    pwtest.main()
