"""Endpoint health (issue 11): active checks that know the chain head, passive ejection and its
breaker, panic, drain, flap resistance and runtime knobs, as a user of the gateway sees them.
Loopback only, bounded in count and time: pathway-mock-upstream processes with a control listener
(turned bad and good while they run) behind a real pathway.

Client traffic calls eth_chainId, and the probes call eth_blockNumber: the mocks count calls by
method, so a mock's eth_chainId count is the relays it received."""

import collections
import http.client
import json
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402
from dp_util import Pathway, send_signal, wait_for  # noqa: E402
from pwtest import main, test  # noqa: E402

CHAIN_ID = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
HEAD0 = 0x1000000  # the mocks' head at start


class Mock:
    """A pathway-mock-upstream with a control listener, named for the config (endpoint `name:`)."""

    def __init__(self, name, *args):
        self.name = name
        self.port = pwtest.free_port()
        self.ctl = pwtest.free_port()
        self.proc = pwtest.Proc([pwtest.binary("pathway-mock-upstream"), "--port", str(self.port), "--control-port",
                                 str(self.ctl), *args], name=f"mock-{name}")
        pwtest.wait_port(self.ctl)
        pwtest.wait_port(self.port)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def set(self, **settings):
        status, _, body = pwtest.request_json(self.ctl, "POST", "/control", settings)
        assert status == 200, (self.name, settings, status, body)
        return body

    def counters(self):
        status, _, body = pwtest.request_json(self.ctl, "GET", "/control")
        assert status == 200, (self.name, status, body)
        return body

    def calls(self, method="eth_chainId"):
        return self.counters()["by_method"].get(method, 0)

    def reset(self):
        status, _, _ = pwtest.request_json(self.ctl, "POST", "/control/reset-counters", {})
        assert status == 200


def mocks(n, *args):
    return [Mock(f"m{i}", *args) for i in range(n)]


class HealthPathway(Pathway):
    """A Pathway whose endpoints carry `name:` (the mocks' names): admin paths and labels use it."""

    def __init__(self, ms, extra, threads=2, over=""):
        self.names = {m.url: m.name for m in ms}
        super().__init__([("eth", [m.url for m in ms], over)], extra=extra, threads=threads)

    def text(self, services=None, extra=None, listen_extra=None, port=None):
        lines = []
        for line in super().text(services, extra, listen_extra, port).split("\n"):
            lines.append(line)
            u = line.strip()[len("- url: "):] if line.strip().startswith("- url: ") else None
            if u in self.names:
                lines.append(f"        name: {self.names[u]}")
        return "\n".join(lines)

    def set_extra(self, extra, sighup=False):
        """Rewrites the config with new defaults and applies it without a restart."""
        generation = self.stats()["generation"]
        self.extra = extra
        self.write()
        if sighup:
            send_signal(self.proc, signal.SIGHUP)
        else:
            st, _, body = self.reload()
            assert st == 200, (st, body)
        wait_for(lambda: self.stats()["generation"] > generation, what="the new generation")

    def health(self, name):
        """/stats's services[eth].endpoints[name].health (KeyError when there is none: no health)."""
        for svc in self.stats()["services"]:
            if svc["id"] == "eth":
                for ep in svc["endpoints"]:
                    if ep["name"] == name:
                        return ep["health"]
        raise AssertionError(f"no endpoint {name} in /stats")

    def service_health(self):
        return [s for s in self.stats()["services"] if s["id"] == "eth"][0]["health"]

    def metric(self, name, **labels):
        """The sum of the series of /metrics `name` whose labels include these; None when there is none."""
        total, found = 0.0, False
        for line in self.metrics().splitlines():
            m = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
            if not m or m.group(1) != name:
                continue
            got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            if all(got.get(k) == str(v) for k, v in labels.items()):
                total += float(m.group(3))
                found = True
        return total if found else None


def health_defaults(retry="{}", health_check=None, outlier=None):
    """A `defaults:` section with short times; health_check and outlier: {key: YAML value} overrides."""
    hc = {"interval": "200ms", "timeout": "500ms", "unhealthy_threshold": "3", "healthy_threshold": "1", "max_block_lag": "8"}
    ol = {"consecutive_failures": "3", "failure_rate": "{threshold: 0}", "base_ejection_time": "1s", "max_ejection_time": "1s"}
    hc.update(health_check or {})
    ol.update(outlier or {})

    def flow(d):
        return "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"

    return f"defaults:\n  retry: {retry}\n  health_check: {flow(hc)}\n  outlier: {flow(ol)}\n"


class Client:
    """One keep-alive connection to the relay. post() returns the status, 0 when the connection
    failed (then it reconnects; the request is not sent again: a failure is counted as one)."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def post(self, body=CHAIN_ID, service="eth"):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            self.conn.request("POST", f"/v1/{service}", json.dumps(body).encode(), {"Content-Type": "application/json"})
            r = self.conn.getresponse()
            r.read()
            return r.status
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = None
            return 0

    def close(self):
        if self.conn is not None:
            self.conn.close()


def load(port, n, threads=4):
    """n eth_chainId requests over `threads` keep-alive connections; returns Counter(status)."""
    counts = collections.Counter()
    lock = threading.Lock()

    def run(share):
        c = Client(port)
        mine = collections.Counter(c.post() for _ in range(share))
        c.close()
        with lock:
            counts.update(mine)

    ts = [threading.Thread(target=run, args=(n // threads + (i < n % threads),)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert sum(counts.values()) == n, counts
    return counts


def drain(pw, path):
    """POST /endpoints/<path> as pathwayctl would; returns (status, JSON body or None)."""
    status, _, data = pwtest.request(pw.admin, "POST", f"/endpoints/{path}", {}, pw.admin_headers())
    try:
        return status, json.loads(data)
    except ValueError:
        return status, None


def wait_state(pw, name, states, timeout=5.0):
    states = (states,) if isinstance(states, str) else states
    return wait_for(lambda: pw.health(name)["state"] in states and pw.health(name), timeout,
                    what=f"{name} in state {states}")


def wait_probed(pw, names):
    """Every endpoint probed at least once and healthy: the heads are known."""
    for n in names:
        wait_for(lambda: pw.health(n)["last_probe"] is not None and pw.health(n)["state"] == "healthy", 5.0,
                 what=f"{n} probed and healthy")


@test
def test_dead_endpoint_is_ejected_and_comes_back():
    # Without health (main before issue 11) this fails: with retries off a refused endpoint stays in
    # rotation, a third of the requests fail, and /stats has no "health" nor /metrics the series.
    ms = mocks(3)
    dead = ms[1]
    pw = HealthPathway(ms, health_defaults(retry="{max_attempts: 1}"))
    wait_probed(pw, ["m0", "m1", "m2"])
    dead.set(fault="refuse")
    # passive ejection: within consecutive_failures (3) requests that reach it
    c = Client(pw.port)
    statuses = collections.Counter(c.post() for _ in range(300))
    c.close()
    failed_first = 300 - statuses[200]
    assert failed_first <= 3, statuses
    h = pw.health("m1")
    assert h["state"] in ("ejected", "half_open", "unhealthy") and h["up"] is False, h
    # connects are refused; a pooled connection it reset may fail first as a reset
    assert h["ejections"] >= 1 and h["eject_reason"] in ("connect_failure", "reset"), h
    assert pw.metric("pathway_ejections_total", service="eth", endpoint="m1", reason=h["eject_reason"]) >= 1
    assert pw.metric("pathway_endpoint_up", service="eth", endpoint="m1") == 0
    assert h["failures"].get("connect_failure", 0) + h["failures"].get("reset", 0) >= 1, h
    # 99.9% of 5,000 with retries off, the ejection included
    counts = load(pw.port, 4700)
    failed = failed_first + 4700 - counts[200]
    print(f"  dead endpoint: {failed_first} failed before it was out, {failed} of 5000 with retries off", flush=True)
    assert failed <= 5, (failed_first, counts)
    # healed: back in rotation within base_ejection_time (1s) + one probe interval (200ms) + slack
    dead.reset()
    dead.set(fault="none")
    t0 = time.time()
    c = Client(pw.port)

    def back():
        for _ in range(6):
            c.post()
        return dead.calls() > 0 and pw.metric("pathway_endpoint_up", service="eth", endpoint="m1") == 1

    wait_for(back, 5.0, what="m1 back in rotation")
    took = time.time() - t0
    c.close()
    print(f"  healed: back in rotation after {took:.2f}s (base_ejection_time 1s, interval 200ms)", flush=True)
    assert took <= 1.0 + 0.2 + 1.0, took
    assert pw.health("m1")["state"] == "healthy"
    # retries on (a runtime change): 100% while it dies again
    pw.set_extra(health_defaults(retry="{max_attempts: 2, backoff: {base: 0s}, budget: {percent: 100}}"))
    before = pw.health("m1")["ejections"]
    dead.set(fault="refuse")
    counts = load(pw.port, 5000)
    assert counts == {200: 5000}, counts
    assert pw.health("m1")["ejections"] > before  # out again, and no client saw it


@test
def test_lagging_endpoint_gets_no_requests_until_it_catches_up():
    # Without health this fails: the lagging endpoint gets a third of the requests, and /stats has
    # no state, head or lag.
    ms = mocks(3, "--block-time", "500")
    slow = ms[2]
    slow.set(lag=20)
    pw = HealthPathway(ms, health_defaults())
    h = wait_state(pw, "m2", "lagging")
    for m in ms:
        m.reset()
    counts = load(pw.port, 300, threads=2)
    assert counts == {200: 300}, counts
    assert slow.calls() == 0, slow.counters()
    assert ms[0].calls() > 0 and ms[1].calls() > 0
    wait_for(lambda: slow.calls("eth_blockNumber") > 0, 2.0, what="m2 still probed")
    h = pw.health("m2")
    assert h["state"] == "lagging" and h["up"] is False, h
    assert 18 <= h["lag"] <= 22, h
    assert h["head"] is not None and HEAD0 <= h["head"] + h["lag"], h
    assert h["last_probe"]["result"] == "pass", h
    h0 = pw.health("m0")
    assert h0["state"] == "healthy" and h0["lag"] is not None and h0["lag"] <= 2, h0
    svc = pw.service_health()
    assert svc["head"] >= h0["head"] >= HEAD0 and svc["panic"] is False and svc["endpoints_up"] == 2, svc
    assert 18 <= pw.metric("pathway_endpoint_lag_blocks", service="eth", endpoint="m2") <= 22
    assert pw.metric("pathway_endpoint_head_block", service="eth", endpoint="m0") >= HEAD0
    assert pw.metric("pathway_endpoint_up", service="eth", endpoint="m2") == 0
    assert pw.metric("pathway_endpoint_up", service="eth", endpoint="m0") == 1
    assert pw.metric("pathway_health_checks_total", service="eth", endpoint="m2", result="pass") >= 1
    # caught up: takes traffic again
    slow.set(lag=0)
    wait_state(pw, "m2", "healthy")
    slow.reset()
    assert load(pw.port, 300, threads=2) == {200: 300}
    assert slow.calls() > 0


@test
def test_endpoint_answering_429_on_half_is_ejected():
    # Without health this fails: the 429 endpoint keeps getting a third of the first attempts and
    # pathway_ejections_total does not exist.
    ms = mocks(3)
    limited = ms[1]
    limited.set(status=429, status_rate=0.5)
    # active checks off: the probe would get 429s too; this is passive ejection alone
    pw = HealthPathway(ms, health_defaults(retry="{max_attempts: 2, backoff: {base: 0s}, budget: {percent: 100}}",
                                           health_check={"interval": "0s"},
                                           outlier={"base_ejection_time": "10s", "max_ejection_time": "10s"}))
    c = Client(pw.port)
    for _ in range(300):
        assert c.post() == 200
        if pw.metric("pathway_ejections_total", service="eth", endpoint="m1", reason="http_429"):
            break
    c.close()
    t_ejected = time.time()
    assert pw.metric("pathway_ejections_total", service="eth", endpoint="m1", reason="http_429") == 1
    h = pw.health("m1")
    assert h["state"] == "ejected" and h["eject_reason"] == "http_429", h
    assert h["failures"].get("http_429", 0) >= 1 and h["ejected_until"] is not None, h
    for m in ms:
        m.reset()
    counts = load(pw.port, 300, threads=2)
    assert time.time() - t_ejected < 9.0  # still within its ejection: no half-open trial yet
    assert counts == {200: 300}, counts
    assert limited.calls() == 0, limited.counters()
    assert ms[0].calls() + ms[2].calls() == 300 and ms[0].calls() > 50 and ms[2].calls() > 50


@test
def test_all_endpoints_dead_is_panic_and_requests_still_go_out():
    # Without health this fails: pathway_service_panic does not exist (requests do go out, which
    # is what panic keeps).
    ms = mocks(2)
    pw = HealthPathway(ms, health_defaults(retry="{max_attempts: 1}", health_check={"unhealthy_threshold": "2"}))
    wait_probed(pw, ["m0", "m1"])
    assert pw.metric("pathway_service_panic", service="eth") == 0
    for m in ms:
        m.set(status=503)
    wait_for(lambda: pw.metric("pathway_service_panic", service="eth") == 1, 5.0, what="panic")
    svc = pw.service_health()
    assert svc["panic"] is True and svc["endpoints_up"] == 0, svc
    panic_before = svc["panic_requests"]
    for m in ms:
        m.reset()
    c = Client(pw.port)
    statuses = collections.Counter(c.post() for _ in range(20))
    c.close()
    assert sum(m.calls() for m in ms) == 20, [m.counters() for m in ms]  # every one went out
    assert 0 not in statuses, statuses
    assert pw.service_health()["panic_requests"] >= panic_before + 20
    # refusing connections: attempts still go out (connects fail)
    for m in ms:
        m.set(fault="refuse", status=200)
    before = pw.metric("pathway_attempts_total", service="eth", result="connect_failure") or 0
    c = Client(pw.port)
    for _ in range(10):
        c.post()
    c.close()
    assert pw.metric("pathway_attempts_total", service="eth", result="connect_failure") >= before + 10
    assert pw.metric("pathway_service_panic", service="eth") == 1
    # back: panic ends
    for m in ms:
        m.set(fault="none")
    wait_for(lambda: pw.metric("pathway_service_panic", service="eth") == 0, 5.0, what="panic over")
    wait_for(lambda: all(pw.metric("pathway_endpoint_up", service="eth", endpoint=m.name) == 1 for m in ms), 5.0,
             what="both up")
    assert pw.service_health()["endpoints_up"] == 2


@test
def test_drain_stops_new_requests_and_keeps_in_flight_ones():
    # Without health this fails: POST /endpoints/eth/m1/drain is 404 on a dataplane without it.
    ms = mocks(3)
    target = ms[1]
    pw = HealthPathway(ms, health_defaults(health_check={"interval": "0s"}))
    for m in ms:
        m.set(latency_ms=1500)
    results, threads = [], []

    def slow_request():
        c = Client(pw.port)
        results.append(c.post())
        c.close()

    # in flight on m1: send slow requests until one reached it
    deadline = time.time() + 10
    while target.counters()["requests"] == 0 and time.time() < deadline:
        t = threading.Thread(target=slow_request)
        t.start()
        threads.append(t)
        time.sleep(0.1)
    assert target.counters()["requests"] >= 1, "no request reached m1"
    st, body = drain(pw, "eth/m1/drain")
    assert st == 200 and (body["service"], body["endpoint"], body["state"]) == ("eth", "m1", "draining"), (st, body)
    for m in ms:
        m.set(latency_ms=0)
    for t in threads:
        t.join(30)
    assert results == [200] * len(threads), results  # the in-flight one on m1 finished too
    assert target.calls() >= 1
    h = pw.health("m1")
    assert h["state"] == "draining" and h["up"] is False, h
    assert pw.metric("pathway_endpoint_up", service="eth", endpoint="m1") == 0
    target.reset()
    assert load(pw.port, 300, threads=2) == {200: 300}
    assert target.calls() == 0, target.counters()
    # the last endpoint not drained cannot be drained; unknown names are 404
    assert drain(pw, "eth/m0/drain")[0] == 200
    st, body = drain(pw, "eth/m2/drain")
    assert st == 409, (st, body)
    assert pw.health("m2")["state"] == "healthy"
    assert drain(pw, "eth/nope/drain")[0] == 404
    assert drain(pw, "nope/m0/drain")[0] == 404
    # undrain restores
    for n in ("m0", "m1"):
        st, body = drain(pw, f"eth/{n}/undrain")
        assert st == 200 and body["endpoint"] == n and body["state"] != "draining", (st, body)
    assert pw.health("m1")["state"] == "healthy"
    assert load(pw.port, 300, threads=2) == {200: 300}
    assert target.calls() > 0 and ms[0].calls() > 0


@test
def test_flapping_endpoint_is_not_ejected_more_than_once_per_base_ejection_time():
    # Without health this fails: pathway_ejections_total does not exist (and the flapping endpoint
    # fails a third of the first attempts all along).
    ms = mocks(3)
    flap = ms[1]
    base = 2.0
    pw = HealthPathway(ms, health_defaults(retry="{max_attempts: 2, backoff: {base: 0s}, budget: {percent: 100}}",
                                           health_check={"healthy_threshold": "2"},
                                           outlier={"base_ejection_time": "2s", "max_ejection_time": "10s"}))
    wait_probed(pw, ["m0", "m1", "m2"])
    stop = threading.Event()
    counts = collections.Counter()

    def traffic():
        c = Client(pw.port)
        while not stop.is_set():
            counts[c.post()] += 1
            time.sleep(0.002)
        c.close()

    ts = [threading.Thread(target=traffic) for _ in range(2)]
    for t in ts:
        t.start()
    run = 8.0
    t0 = time.time()
    bad = False
    try:
        while time.time() - t0 < run:
            bad = not bad
            flap.set(status=503 if bad else 200)
            time.sleep(1.0)
    finally:
        stop.set()
        for t in ts:
            t.join(30)
    elapsed = time.time() - t0
    ejections = pw.metric("pathway_ejections_total", service="eth", endpoint="m1")
    print(f"  flapping for {elapsed:.1f}s: ejected {ejections:.0f} times (base_ejection_time {base:.0f}s)", flush=True)
    assert ejections is not None and 1 <= ejections <= elapsed / base + 1, (ejections, elapsed)
    assert pw.health("m1")["ejections"] == ejections
    assert counts[200] > 100 and set(counts) == {200}, counts


@test
def test_knobs_change_without_a_restart():
    # Without health this fails: there is no lagging state to leave, no probe to stop (the mocks'
    # eth_blockNumber count stays 0) and no ejection to start.
    ms = mocks(3)
    ms[2].set(lag=20)
    retry = "{max_attempts: 2, backoff: {base: 0s}, budget: {percent: 100}}"
    pw = HealthPathway(ms, health_defaults(retry=retry))
    wait_state(pw, "m2", "lagging")
    # max_block_lag raised: no longer lagging, takes traffic
    pw.set_extra(health_defaults(retry=retry, health_check={"max_block_lag": "50"}))
    wait_state(pw, "m2", "healthy")
    ms[2].reset()
    assert load(pw.port, 150, threads=2) == {200: 150}
    assert ms[2].calls() > 0
    # interval 0: probes stop (the mocks' eth_blockNumber count stops rising); back on, they resume
    pw.set_extra(health_defaults(retry=retry, health_check={"interval": "0s", "max_block_lag": "50"}), sighup=True)
    time.sleep(0.6)
    before = ms[0].calls("eth_blockNumber")
    checks = pw.metric("pathway_health_checks_total", service="eth", endpoint="m0")
    time.sleep(1.0)
    assert ms[0].calls("eth_blockNumber") == before
    assert pw.metric("pathway_health_checks_total", service="eth", endpoint="m0") == checks
    pw.set_extra(health_defaults(retry=retry, health_check={"max_block_lag": "50"}))
    wait_for(lambda: ms[0].calls("eth_blockNumber") >= before + 2, 3.0, what="probes again")
    # consecutive_failures: m1 resets relays (eth_chainId) while its probes pass
    ms[1].set(fault="reset", fault_method="eth_chainId")
    pw.set_extra(health_defaults(retry=retry, health_check={"max_block_lag": "50"}, outlier={"consecutive_failures": "1000"}))
    assert load(pw.port, 150, threads=2) == {200: 150}
    assert ms[1].counters()["requests"] > 0
    h = pw.health("m1")
    assert h["ejections"] == 0 and sum(h["failures"].values()) >= 3, h
    pw.set_extra(health_defaults(retry=retry, health_check={"max_block_lag": "50"}, outlier={"consecutive_failures": "2"}))
    assert load(pw.port, 150, threads=2) == {200: 150}
    assert pw.metric("pathway_ejections_total", service="eth", endpoint="m1", reason="reset") >= 1


if __name__ == "__main__":
    main()
