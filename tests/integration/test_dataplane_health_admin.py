"""Endpoint health as the operator sees and drives it on the dataplane's admin listener (issue 11):
POST /endpoints/<service>/<endpoint>/drain and /undrain with their errors (400, 401, 403, 404,
405, 409), the `health` objects of /stats, the health series of /metrics (promtool-clean), and the
health_check / outlier knobs of each service in both, following a reload. Whether health works
(ejection, probes, lag) is tested in test_dataplane_health.py; this file tests what shows it.

Each test fails on a dataplane without endpoint health: the drain routes answer 404 and /stats and
/metrics have none of the health fields and series."""

import json
import os
import re
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dp_util  # noqa: E402
import pwtest  # noqa: E402
from dp_util import Pathway, promtool_check, start_mock  # noqa: E402
from pwtest import main, test  # noqa: E402

REASONS = ["connect_failure", "reset", "timeout", "http_5xx", "http_429", "rpc_rate_limited", "rpc_missing_data",
           "rpc_server_error"]
RESULTS = ["pass", "connect_failure", "timeout", "reset", "http_error", "rpc_error", "bad_response"]
STATES = ["healthy", "unhealthy", "lagging", "ejected", "half_open", "draining"]
NO_PROBES = "defaults:\n  health_check:\n    interval: 0s\n"


def path(service, endpoint, action):
    return f"/endpoints/{urllib.parse.quote(service, safe='')}/{urllib.parse.quote(endpoint, safe='')}/{action}"


def endpoint(pw, service, name):
    for s in pw.stats()["services"]:
        if s["id"] == service:
            for e in s["endpoints"]:
                if e["name"] == name:
                    return e
    raise AssertionError(f"{service}/{name} not in /stats")


def service(pw, sid):
    return next(s for s in pw.stats()["services"] if s["id"] == sid)


def sample(text, name, **labels):
    """The value of one series of a /metrics text, or None when it is not there."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


@test
def test_drain_undrain_and_their_errors():
    _, up = start_mock()
    d = tempfile.mkdtemp(prefix="pw-dp-drain-")
    token = "adm-" + os.urandom(8).hex()
    tok = pwtest.write_file(d, "admin.token", token + "\n")
    # two endpoints on one host:port: the second is named "127.0.0.1:<port>#2" (':' and '#' to encode)
    u = f"http://127.0.0.1:{up}"
    pw = Pathway([("eth", [u, u + "/two"], ""), ("poly", [u], "")], extra=NO_PROBES, tmpdir=d,
                 admin_extra=f"  token_file: {tok}")
    pw.admin_token = token
    auth = pw.admin_headers()
    first, second = f"127.0.0.1:{up}", f"127.0.0.1:{up}#2"
    assert [e["name"] for e in service(pw, "eth")["endpoints"]] == [first, second]
    drain2 = path("eth", second, "drain")
    assert "%3A" in drain2 and "%23" in drain2, drain2

    # no token, a wrong one: 401, nothing drained
    for headers in ({}, {"Authorization": "Bearer nope"}):
        st, _, body = dp_util.admin_post(pw.admin, drain2, headers)
        assert st == 401 and body["ok"] is False, (st, body)
    # the browser guard holds here too
    st, _, body = pwtest.request(pw.admin, "POST", drain2, b"{}", {**auth, "Content-Type": "text/plain"})
    assert st == 403 and b"Content-Type" in body, (st, body)
    st, _, body = pwtest.request(pw.admin, "POST", drain2, b"{}", {**auth, "Content-Type": "application/json",
                                                                 "Origin": "http://x.example"})
    assert st == 403, (st, body)
    # another method: 405, Allow: POST
    for method in ("GET", "PUT", "DELETE"):
        st, hdrs, body = pwtest.request(pw.admin, method, drain2, b"{}" if method == "PUT" else None,
                                        {**auth, "Content-Type": "application/json"})
        assert st == 405 and hdrs.get("allow") == "POST", (method, st, hdrs, body)
    assert endpoint(pw, "eth", second)["health"]["state"] == "healthy"

    # unknown service, unknown endpoint: 404 naming which
    st, _, body = dp_util.admin_post(pw.admin, path("nope", first, "drain"), auth)
    assert st == 404 and "unknown service" in body["error"] and "nope" in body["error"], body
    st, _, body = dp_util.admin_post(pw.admin, path("eth", "127.0.0.1:1", "drain"), auth)
    assert st == 404 and "unknown endpoint" in body["error"] and "127.0.0.1:1" in body["error"], body
    assert body["service"] == "eth", body
    st, _, body = dp_util.admin_post(pw.admin, path("eth", first + "#3", "drain"), auth)
    assert st == 404 and f"{first}#3" in body["error"], body
    # neither drain nor undrain, or more path: 404; a bad escape: 400
    for p in (path("eth", second, "stop"), drain2 + "/", f"/endpoints/eth/{first}", "/endpoints/"):
        st, _, body = dp_util.admin_post(pw.admin, p, auth)
        assert st == 404 and "drain" in body["error"], (p, st, body)
    for p in ("/endpoints/eth/a%2/drain", "/endpoints/eth/a%zz/drain", "/endpoints/eth/a%00b/drain", "/endpoints/e%/x/drain",
              "/endpoints/eth/%FF%FE/drain", "/endpoints/eth/a%0Ab/drain", "/endpoints/eth/" + "a" * 300 + "/drain",
              "/endpoints//x/drain", "/endpoints/eth//drain"):
        st, _, body = dp_util.admin_post(pw.admin, p, auth)
        assert st == 400 and "percent-encoded" in body["error"], (p, st, body)
        assert body["error"].startswith("service:" if p.startswith(("/endpoints/e%", "/endpoints//")) else "endpoint:"), body

    # drain the second: 200, draining, not up, one of two up
    st, _, body = dp_util.admin_post(pw.admin, drain2, auth)
    assert st == 200 and body == {"ok": True, "service": "eth", "endpoint": second, "state": "draining"}, body
    h = endpoint(pw, "eth", second)["health"]
    assert h["state"] == "draining" and h["up"] is False, h
    assert endpoint(pw, "eth", first)["health"]["up"] is True
    assert service(pw, "eth")["health"]["endpoints_up"] == 1 and service(pw, "eth")["health"]["panic"] is False
    text = pw.metrics()
    assert sample(text, "pathway_endpoint_up", service="eth", endpoint=second) == 0, text
    assert sample(text, "pathway_endpoint_up", service="eth", endpoint=first) == 1, text
    # again: still 200 (a drain is a state, not a toggle)
    assert dp_util.admin_post(pw.admin, drain2, auth)[0] == 200

    # the last endpoint not drained: 409 with the reason, and it stays in rotation
    for sid, name in (("eth", first), ("poly", first)):
        st, _, body = dp_util.admin_post(pw.admin, path(sid, name, "drain"), auth)
        assert st == 409 and body["ok"] is False and body["state"] == "healthy", body
        assert body["service"] == sid and body["endpoint"] == name and name in body["error"], body
        assert endpoint(pw, sid, name)["health"]["up"] is True

    # a reload that keeps the endpoint keeps its drain (the state is the endpoint's)
    pw.write(pw.text(extra=NO_PROBES + "limiter:\n  max_concurrent: 50"))
    st, _, body = pw.reload()
    assert st == 200 and body["changed"], body
    assert endpoint(pw, "eth", second)["health"]["state"] == "draining"

    # undrain: healthy and up again
    st, _, body = dp_util.admin_post(pw.admin, path("eth", second, "undrain"), auth)
    assert st == 200 and body == {"ok": True, "service": "eth", "endpoint": second, "state": "healthy"}, body
    assert endpoint(pw, "eth", second)["health"]["up"] is True
    assert service(pw, "eth")["health"]["endpoints_up"] == 2
    assert sample(pw.metrics(), "pathway_endpoint_up", service="eth", endpoint=second) == 1
    # ':' may also come unencoded (it is allowed in a path segment)
    st, _, body = dp_util.admin_post(pw.admin, f"/endpoints/eth/{first}/undrain", auth)
    assert st == 200 and body["endpoint"] == first and body["state"] == "healthy", body

    # each drain and undrain is logged at info, naming endpoint and service
    dp_util.wait_for(lambda: "undrained" in pw.proc.output(), what="the undrain log line")
    log = pw.proc.output()
    assert re.search(rf"info: endpoint {re.escape(second)} of service eth drained", log), log
    assert re.search(rf"info: endpoint {re.escape(second)} of service eth undrained by the admin API \(now healthy\)", log), log


def check_endpoint_health(h, now_ms):
    assert set(h) == {"state", "up", "head", "lag", "last_probe", "ejections", "ejections_total", "ejected_until",
                      "eject_reason", "failures", "checks", "latency_ewma_ms"}, sorted(h)
    assert h["state"] in STATES and isinstance(h["up"], bool), h
    assert sorted(h["failures"]) == sorted(REASONS) and all(isinstance(v, int) for v in h["failures"].values()), h
    assert sorted(h["checks"]) == sorted(RESULTS) and all(isinstance(v, int) for v in h["checks"].values()), h
    assert isinstance(h["ejections"], int) and isinstance(h["ejections_total"], int), h
    assert isinstance(h["latency_ewma_ms"], float) and h["latency_ewma_ms"] >= 0, h
    if h["last_probe"] is not None:
        lp = h["last_probe"]
        assert set(lp) == {"result", "at", "latency_ms"} and lp["result"] in RESULTS, lp
        assert abs(lp["at"] - now_ms) < 60_000 and isinstance(lp["latency_ms"], float), (lp, now_ms)  # unix ms
    if h["ejected_until"] is not None:
        assert h["ejected_until"] > now_ms - 1000 and h["eject_reason"] in REASONS, h


@test
def test_stats_and_metrics_show_health_and_every_knob():
    _, up = start_mock()
    u = f"http://127.0.0.1:{up}"
    defaults = ("defaults:\n  health_check:\n    interval: 0s\n    unhealthy_threshold: 4\n"
                "  outlier:\n    base_ejection_time: 1500ms\n    failure_rate: {threshold: 30}\n")
    eth_over = ("health_check:\n  timeout: 750ms\n  max_block_lag: 3\n"
                "outlier:\n  consecutive_failures: 7\n  failure_rate: {window: 2m}\n  max_ejection_percent: 34")
    pw = Pathway([("eth", [u, u + "/two"], eth_over), ("poly", [u], "")], extra=defaults)
    for _ in range(3):
        assert pw.rpc("eth", {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})[0] == 200

    now = int(time.time() * 1000)
    st = pw.stats()
    for s in st["services"]:
        sh = s["health"]
        assert set(sh) == {"head", "panic", "endpoints_up", "panic_requests"}, sh
        # no probes: no head known; every endpoint healthy
        assert sh["head"] is None and sh["panic"] is False and sh["panic_requests"] == 0, sh
        assert sh["endpoints_up"] == len(s["endpoints"]), s
        for e in s["endpoints"]:
            check_endpoint_health(e["health"], now)
            h = e["health"]
            assert h["state"] == "healthy" and h["up"] is True and h["head"] is None and h["lag"] is None, h
            assert h["last_probe"] is None and h["ejected_until"] is None and h["eject_reason"] is None, h
            assert h["ejections"] == 0 and h["ejections_total"] == 0 and sum(h["checks"].values()) == 0, h

    # the effective settings: the service's own over the defaults, key by key (failure_rate too)
    eth, poly = service(pw, "eth"), service(pw, "poly")
    assert eth["health_check"] == {"interval": "0s", "timeout": "750ms", "request": poly["health_check"]["request"],
                                   "unhealthy_threshold": 4, "healthy_threshold": 2, "max_block_lag": 3}, eth["health_check"]
    assert "eth_blockNumber" in poly["health_check"]["request"]
    assert poly["health_check"]["timeout"] == "2s" and poly["health_check"]["max_block_lag"] == 8, poly["health_check"]
    assert eth["outlier"] == {"consecutive_failures": 7, "base_ejection_time": "1500ms", "max_ejection_time": "5m",
                              "max_ejection_percent": 34,
                              "failure_rate": {"threshold": 30, "min_requests": 20, "window": "2m"}}, eth["outlier"]
    assert poly["outlier"]["consecutive_failures"] == 5 and poly["outlier"]["failure_rate"]["window"] == "30s", poly

    text = pw.metrics()
    promtool_check(text)
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    for name, kind in (("pathway_endpoint_up", "gauge"), ("pathway_endpoint_head_block", "gauge"),
                       ("pathway_endpoint_lag_blocks", "gauge"), ("pathway_ejections_total", "counter"),
                       ("pathway_health_checks_total", "counter"), ("pathway_service_panic", "gauge"),
                       ("pathway_panic_requests_total", "counter"), ("pathway_service_head_block", "gauge")):
        assert types.get(name) == kind, (name, types.get(name))
        assert re.search(rf"^# HELP {name} \S", text, re.M), name
    names = [f"127.0.0.1:{up}", f"127.0.0.1:{up}#2"]
    for ep in names:
        assert sample(text, "pathway_endpoint_up", service="eth", endpoint=ep) == 1
        # every reason and every result, zeros included
        for r in REASONS:
            assert sample(text, "pathway_ejections_total", service="eth", endpoint=ep, reason=r) == 0, (ep, r)
        for r in RESULTS:
            assert sample(text, "pathway_health_checks_total", service="eth", endpoint=ep, result=r) == 0, (ep, r)
    # no head known: no head or lag series at all
    assert not re.search(r"^pathway_(endpoint_head_block|endpoint_lag_blocks|service_head_block)\{", text, re.M), text
    for sid in ("eth", "poly"):
        assert sample(text, "pathway_service_panic", service=sid) == 0
        assert sample(text, "pathway_panic_requests_total", service=sid) == 0
    # the knobs as gauges, durations in seconds
    knobs = {"pathway_health_check_interval_seconds": (0, 0), "pathway_health_check_timeout_seconds": (0.75, 2),
             "pathway_health_check_unhealthy_threshold": (4, 4), "pathway_health_check_healthy_threshold": (2, 2),
             "pathway_health_check_max_lag_blocks": (3, 8), "pathway_outlier_consecutive_failures": (7, 5),
             "pathway_outlier_failure_rate_threshold_percent": (30, 30),
             "pathway_outlier_failure_rate_min_requests": (20, 20),
             "pathway_outlier_failure_rate_window_seconds": (120, 30),
             "pathway_outlier_base_ejection_time_seconds": (1.5, 1.5),
             "pathway_outlier_max_ejection_time_seconds": (300, 300), "pathway_outlier_max_ejection_percent": (34, 50)}
    for name, (e, p) in knobs.items():
        assert types.get(name) == "gauge", name
        assert sample(text, name, service="eth") == e and sample(text, name, service="poly") == p, (name, text)

    # a runtime change shows at once in both
    pw.write(pw.text(extra=defaults.replace("unhealthy_threshold: 4", "unhealthy_threshold: 6")))
    st, _, body = pw.reload()
    assert st == 200 and body["changed"], body
    assert service(pw, "poly")["health_check"]["unhealthy_threshold"] == 6
    assert sample(pw.metrics(), "pathway_health_check_unhealthy_threshold", service="eth") == 6


@test
def test_probed_heads_show_in_stats_and_metrics():
    # active checks against the mock (its eth_blockNumber answers a hex head): the head, the lag and
    # the last probe appear; fails without a prober as much as without the surface
    _, up = start_mock()
    u = f"http://127.0.0.1:{up}"
    pw = Pathway([("eth", [u, u + "/two"], "")], extra="defaults:\n  health_check:\n    interval: 200ms\n")

    def probed():
        s = service(pw, "eth")
        return s if all(e["health"]["last_probe"] is not None and e["health"]["head"] is not None
                        for e in s["endpoints"]) and s["health"]["head"] is not None else None

    s = dp_util.wait_for(probed, timeout=10, what="a probe of each endpoint with a head")
    now = int(time.time() * 1000)
    for e in s["endpoints"]:
        h = e["health"]
        check_endpoint_health(h, now)
        assert h["last_probe"]["result"] == "pass" and h["checks"]["pass"] >= 1, h
        # (the prober moves heads while /stats is read: no exact sum between the figures)
        assert isinstance(h["head"], int) and 0 < h["head"] <= s["health"]["head"], (h, s["health"])
        assert isinstance(h["lag"], int) and h["lag"] >= 0, h
        assert h["state"] == "healthy" and h["up"] is True, h
    text = pw.metrics()
    promtool_check(text)
    for e in s["endpoints"]:
        assert sample(text, "pathway_endpoint_head_block", service="eth", endpoint=e["name"]) >= 1, text
        assert sample(text, "pathway_endpoint_lag_blocks", service="eth", endpoint=e["name"]) is not None, text
        assert sample(text, "pathway_health_checks_total", service="eth", endpoint=e["name"], result="pass") >= 1, text
    assert sample(text, "pathway_service_head_block", service="eth") >= 1, text


if __name__ == "__main__":
    main()
