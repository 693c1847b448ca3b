"""The control plane's API for the web console: who a token is (GET /v1/whoami), the tags and fleet
state of each version, and the per-service traffic series the dataplanes' heartbeats feed
(GET /v1/metrics/services). Reports are sent as dataplanes send them (the dataplane token, POST
status with `traffic`); the last test runs a real managed `pathway` under load."""

import json
import os
import tempfile
import time

import dp_util
import pwtest
from cp_util import ADMIN, DATAPLANE, VIEWER, ControlPlane, expect, fleet


@pwtest.test
def test_whoami():
    cp = ControlPlane(extra_tokens=(("eu", "eu-dataplane-token-0000000000", ["eu-*"]),))
    for token, name, role in ((ADMIN, "ops", "admin"), (VIEWER, "grafana", "viewer"), (DATAPLANE, "fleet", "dataplane"),
                              ("eu-dataplane-token-0000000000", "eu", "dataplane")):
        s, _, b = expect(cp.call("GET", "/v1/whoami", token=token), 200)
        assert b == {"name": name, "role": role}, b
    s, h, b = expect(cp.call("GET", "/v1/whoami", token="not-a-token-at-all-000000"), 401)
    assert h["www-authenticate"].startswith("Bearer") and "token" in b["error"]
    expect(cp.call("GET", "/v1/whoami", token=None), 401)
    expect(cp.call("GET", "/v1/whoami?x=1"), 400)
    expect(cp.call("POST", "/v1/whoami", {}), 405)
    # a dataplane token with ids still may not call another dataplane's routes, nor the operator's
    expect(cp.call("GET", "/v1/dataplanes/us-1/config", token="eu-dataplane-token-0000000000"), 403)
    expect(cp.call("GET", "/v1/versions", token=DATAPLANE), 403)



def report(cp, dp_id, version, applied=True, **more):
    body = {"version": version, "applied": applied, **more}
    if not applied:
        body["error"] = "fake: refused"
    return expect(cp.call("POST", f"/v1/dataplanes/{dp_id}/status", body, token=DATAPLANE), 200)[2]


def fleet_of(cp, n):
    return expect(cp.call("GET", f"/v1/versions/{n}"), 200)[2]["fleet"]


@pwtest.test
def test_versions_carry_tags_and_fleet_state():
    cp = ControlPlane(heartbeat="2s")
    v1 = expect(cp.call("PUT", "/v1/config", fleet("info")), 201)[2]
    expect(cp.call("PUT", "/v1/config", fleet("warn")), 201)
    for name, v in (("stable", 1), ("a-first", 1), ("next", 2), ("moved", 2)):
        expect(cp.call("PUT", f"/v1/tags/{name}", {"version": v}), 200)
    expect(cp.call("PUT", "/v1/tags/moved", {"version": 1}), 200)  # tags say where they point now
    expect(cp.call("PUT", "/v1/tags/gone", {"version": 2}), 200)
    expect(cp.call("DELETE", "/v1/tags/gone"), 200)
    # dp-1 runs v2; dp-2 runs v1 and was handed v2 (applying); dp-3 NACKed v2 and runs nothing;
    # dp-4 ACKed v1 but serves another document (drifted: it runs neither as far as we know)
    expect(cp.call("GET", "/v1/dataplanes/dp-1/config?version=0", token=DATAPLANE), 200)
    report(cp, "dp-1", 2)
    report(cp, "dp-2", 1)
    expect(cp.call("GET", "/v1/dataplanes/dp-2/config?version=1", token=DATAPLANE), 200)
    report(cp, "dp-3", 2, applied=False)
    report(cp, "dp-4", 1, hash="0" * 64)
    states = {d["id"]: d["state"] for d in expect(cp.call("GET", "/v1/dataplanes"), 200)[2]["dataplanes"]}
    assert states == {"dp-1": "synced", "dp-2": "applying", "dp-3": "rejected", "dp-4": "drifted"}, states
    s, _, b = expect(cp.call("GET", "/v1/versions", token=VIEWER), 200)
    got = {v["version"]: (v["tags"], v["fleet"]) for v in b["versions"]}
    assert got == {2: (["next"], {"synced": 1, "rejected": 1, "applying": 1}),
                   1: (["a-first", "moved", "stable"], {"synced": 1, "rejected": 0, "applying": 0})}, got
    b = expect(cp.call("GET", "/v1/versions/1", token=VIEWER), 200)[2]
    assert b["tags"] == ["a-first", "moved", "stable"] and b["fleet"] == got[1][1] and b["hash"] == v1["hash"]
    assert "document" in b
    # filters and pages keep them
    b = expect(cp.call("GET", "/v1/versions?limit=1&before=2"), 200)[2]
    assert [(v["version"], v["fleet"]["synced"]) for v in b["versions"]] == [(1, 1)]
    # dp-2 ACKs v2: it runs v2 now, and no longer v1
    report(cp, "dp-2", 2)
    assert fleet_of(cp, 2) == {"synced": 2, "rejected": 1, "applying": 0}
    assert fleet_of(cp, 1) == {"synced": 0, "rejected": 0, "applying": 0}
    # dataplanes not heard of within heartbeat_timeout are in no count
    time.sleep(2.3)
    report(cp, "dp-1", 2)
    assert fleet_of(cp, 2) == {"synced": 1, "rejected": 0, "applying": 0}


@pwtest.test
def test_fleet_state_of_a_page_over_many_dataplanes():
    """A page of 50 versions over 500 dataplanes: every count right (one pass over the dataplanes)."""
    cp = ControlPlane(extra_config="max_dataplanes: 1000\n")
    for i in range(50):
        expect(cp.call("PUT", "/v1/config", fleet(conns=10 + i)), 201)
    for i in range(500):
        report(cp, f"dp-{i:03d}", 1 + i % 50)
    b = expect(cp.call("GET", "/v1/versions?limit=50"), 200)[2]
    assert len(b["versions"]) == 50
    for v in b["versions"]:
        assert v["fleet"] == {"synced": 10, "rejected": 0, "applying": 0}, v


def beat(cp, dp_id, version, services, traffic_version=None):
    """One heartbeat as a dataplane sends it: an ACK of `version` with cumulative traffic counters
    {service: (requests, errors, latency bucket index)} since it runs `traffic_version`."""
    svcs = {}
    for name, (req, err, lat) in services.items():
        buckets = [0] * 14
        buckets[lat] = req
        svcs[name] = {"requests": req, "errors": err, "latency_ms_buckets": buckets}
    body = {"version": version, "applied": True,
            "traffic": {"version": version if traffic_version is None else traffic_version, "services": svcs}}
    return expect(cp.call("POST", f"/v1/dataplanes/{dp_id}/status", body, token=DATAPLANE), 200)


def series(cp, query="", token=ADMIN):
    return expect(cp.call("GET", "/v1/metrics/services" + query, token=token), 200)[2]


def total(svc, key):
    return sum(svc[key])


@pwtest.test
def test_service_series_from_heartbeats():
    cp = ControlPlane()
    expect(cp.call("PUT", "/v1/config", fleet(), headers={"Pathway-Message": "first"}), 201)
    b = series(cp)
    assert b["resolution_ms"] == 10000 and b["keep_ms"] == 3600000 and b["since_ms"] == 3600000
    assert abs(b["now_ms"] - time.time() * 1000) < 5000
    assert b["services"] == {}
    assert [(m["version"], m["kind"], m["author"]) for m in b["versions"]] == [(1, "apply", "ops")]
    # first reports set each dataplane's baseline: what they counted before is no spike
    beat(cp, "dp-1", 1, {"eth": (1000, 10, 3), "poly": (50, 0, 2)})
    beat(cp, "dp-2", 1, {"eth": (400, 0, 3)})
    b = series(cp)
    assert set(b["services"]) == {"eth", "poly"} and total(b["services"]["eth"], "requests") == 0, b
    # then what grew, per service, summed over the fleet
    beat(cp, "dp-1", 1, {"eth": (1100, 12, 3), "poly": (60, 0, 2)})
    beat(cp, "dp-2", 1, {"eth": (430, 1, 3)})
    beat(cp, "dp-1", 1, {"eth": (1150, 12, 3), "poly": (60, 0, 2)})
    eth = series(cp)["services"]["eth"]
    assert total(eth, "requests") == 180 and total(eth, "errors") == 3, eth
    assert len(eth["t"]) in (1, 2) and eth["t"] == sorted(eth["t"])  # two if a bucket boundary fell in between
    assert all(t % 10000 == 0 for t in eth["t"])
    assert set(eth) == {"t", "requests", "errors", "rps", "error_rate", "p99_ms"}
    for i in range(len(eth["t"])):
        assert eth["rps"][i] == eth["requests"][i] / 10.0
        if eth["requests"][i]:
            assert eth["p99_ms"][i] == 10 and abs(eth["error_rate"][i] - eth["errors"][i] / eth["requests"][i]) < 1e-9
    assert total(series(cp)["services"]["poly"], "requests") == 10
    # a restart (counters back to 0 and up again) and a new version add their whole counters
    beat(cp, "dp-2", 1, {"eth": (20, 0, 3)})
    expect(cp.call("PATCH", "/v1/config", {"log": {"level": "warn"}}, ctype="application/merge-patch+json"), 201)
    beat(cp, "dp-1", 2, {"eth": (5, 0, 9), "poly": (1, 0, 2)})
    b = series(cp)
    eth = b["services"]["eth"]
    assert total(eth, "requests") == 205, eth
    assert 1000 in eth["p99_ms"] or 10 in eth["p99_ms"]
    assert [(m["version"], m["kind"]) for m in b["versions"]] == [(1, "apply"), (2, "patch")]
    assert b["versions"][0]["t"] <= b["versions"][1]["t"] <= b["now_ms"]
    # one service; an unknown one is no error, just no series
    b = series(cp, "?service=poly&since=15m")
    assert set(b["services"]) == {"poly"} and b["since_ms"] == 900000
    assert series(cp, "?service=nope")["services"] == {}
    assert series(cp, "?since=2h")["since_ms"] == 3600000  # what is kept, at most
    # a short window leaves out older versions' marks
    time.sleep(1.1)
    assert series(cp, "?since=1s")["versions"] == []
    # viewers read it; dataplanes do not
    assert set(series(cp, token=VIEWER)["services"]) == {"eth", "poly"}
    expect(cp.call("GET", "/v1/metrics/services", token=DATAPLANE), 403)
    # bad queries name the parameter
    for q, want in (("?since=2x", 'since: "2x" is not a duration'), ("?since=0s", "since: must be more than 0"),
                    ("?since=", "since: "), ("?service=a/b", 'service: "a/b" is not a service id'),
                    ("?services=eth", "services")):
        s, _, b = expect(cp.call("GET", "/v1/metrics/services" + q), 400)
        assert b["error"].startswith(want) or want in b["error"], (q, b)
    # what an operator sees of it on /metrics (promtool runs in test_controlplane_metrics)
    text = cp.request("GET", "/metrics")[2].decode()
    for needle in ("pathway_control_series_services 2", "pathway_control_series_max_services 256",
                   "pathway_control_series_dataplanes 2", "pathway_control_series_reports_total 7",
                   "pathway_control_series_refused_total 0"):
        assert needle + "\n" in text, (needle, text)
    # a forgotten dataplane is dropped from the series' memory (not from the series)
    cp.stop()
    cp = ControlPlane(heartbeat="1s", directory=cp.dir)
    beat(cp, "dp-9", 2, {"eth": (100, 0, 3)})
    # the restarted control plane reads every dataplane's latest report from the store (their
    # baselines): dp-1, dp-2 and dp-9
    assert "pathway_control_series_dataplanes 3\n" in cp.request("GET", "/metrics")[2].decode()
    time.sleep(1.3)
    expect(cp.call("DELETE", "/v1/dataplanes/dp-9"), 200)
    assert "pathway_control_series_dataplanes 2\n" in cp.request("GET", "/metrics")[2].decode()
    # its next report is a new baseline: no spike of 100
    beat(cp, "dp-9", 2, {"eth": (110, 0, 3)})
    assert total(series(cp)["services"]["eth"], "requests") == 0



@pwtest.test
def test_services_beyond_the_bound_are_counted_and_said_once():
    cp = ControlPlane()
    expect(cp.call("PUT", "/v1/config", fleet()), 201)
    many = {f"svc-{i:03d}": (i, 0, 3) for i in range(300)}
    beat(cp, "dp-1", 1, many)
    beat(cp, "dp-2", 1, many)
    b = series(cp)
    assert len(b["services"]) == 256 and "svc-000" in b["services"] and "svc-299" not in b["services"], len(b["services"])
    text = cp.request("GET", "/metrics")[2].decode()
    assert "pathway_control_series_services 256\n" in text and "pathway_control_series_refused_total 88\n" in text
    # GET /v1/dataplanes and the rollout evidence still see every service's traffic, summed
    dp = expect(cp.call("GET", "/v1/dataplanes/dp-1"), 200)[2]
    assert dp["traffic"]["requests"] == sum(range(300)), dp["traffic"]
    cp.stop()
    assert cp.proc.output().count("left out") == 1, cp.proc.output()[-2000:]


@pwtest.test
def test_a_managed_dataplane_under_load_moves_the_series():
    """A real pathway, managed by a real pathway-control, relays load from the mock upstream; its
    heartbeats move the series by exactly what it answered, per service, across a version change."""
    _, good = dp_util.start_mock()
    _, bad = dp_util.start_mock("--status", "503")
    directory = tempfile.mkdtemp(prefix="pw-console-")
    doc = {"log": {"level": "info"},
           "services": [{"id": "eth", "endpoints": [{"url": f"http://127.0.0.1:{good}"}]},
                        {"id": "poly", "endpoints": [{"url": f"http://127.0.0.1:{bad}"}]}]}
    seed = pwtest.write_file(directory, "seed.json", json.dumps(doc))
    cp = ControlPlane(seed=seed)
    extra = (f"control_plane:\n  url: http://127.0.0.1:{cp.port}\n  id: dp-1\n"
             f"  state_dir: {os.path.join(directory, 'state')}\n  heartbeat_interval: 200ms\n"
             f"  token_file: {os.path.join(cp.dir, 'dataplane.token')}\n")
    pw = dp_util.Pathway([("eth", [f"http://127.0.0.1:{good}"], "")], extra=extra, threads=1, tmpdir=directory)

    def metric(name):
        for line in cp.request("GET", "/metrics")[2].decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def totals():
        svcs = series(cp)["services"]
        return {name: (total(v, "requests"), total(v, "errors")) for name, v in svcs.items()}

    # its first heartbeats with traffic set its baseline (and its services, once it runs version 1)
    dp_util.wait_for(lambda: metric("pathway_control_series_dataplanes") == 1 and totals() == {"eth": (0, 0), "poly": (0, 0)},
                     10, "dp-1's first heartbeats with traffic")
    load = dp_util.RelayLoad([pw.port], clients=2)
    time.sleep(1.0)
    ok, failures = load.finish().totals()
    assert not failures and ok > 0, failures[:3]
    for _ in range(5):
        assert pw.rpc("poly")[0] >= 500  # the upstream's 503, relayed
    dp_util.wait_for(lambda: totals() == {"eth": (ok, 0), "poly": (5, 5)}, 10, f"the series to count {ok} + 5 requests")
    eth = series(cp, "?service=eth")["services"]["eth"]
    busy = [i for i, n in enumerate(eth["requests"]) if n > 0]
    assert busy and all(eth["p99_ms"][i] is not None and eth["rps"][i] > 0 for i in busy), eth
    poly = series(cp, "?service=poly")["services"]["poly"]
    assert [r for r, n in zip(poly["error_rate"], poly["requests"]) if n] == [1.0] * len([n for n in poly["requests"] if n])

    # a new version: its counters restart at 0 on the dataplane, and the series goes on from there
    doc["log"]["level"] = "warn"
    v2 = expect(cp.call("PUT", "/v1/config", doc), 201)[2]["version"]
    dp_util.wait_for(lambda: cp.call("GET", "/v1/dataplanes/dp-1")[2].get("applied_version") == v2, 10, "dp-1 to apply v2")
    load = dp_util.RelayLoad([pw.port], clients=2)
    time.sleep(0.5)
    ok2, failures = load.finish().totals()
    assert not failures and ok2 > 0, failures[:3]
    dp_util.wait_for(lambda: totals()["eth"] == (ok + ok2, 0), 10, f"the series to count {ok} + {ok2} requests")
    b = series(cp)
    assert [(m["version"], m["kind"]) for m in b["versions"]] == [(1, "apply"), (v2, "apply")], b["versions"]
    assert expect(cp.call("GET", f"/v1/versions/{v2}"), 200)[2]["fleet"] == {"synced": 1, "rejected": 0, "applying": 0}
    assert pw.proc.alive()


if __name__ == "__main__":
    pwtest.main()
