"""Safe rollouts on the control plane: a version written with a rollout object goes to a canary set
first, grows by steps, and is promoted or rolled back by the gate on the traffic the dataplanes
report. The dataplanes here are fakes (python threads that long-poll, ACK or NACK, and heartbeat
traffic counters chosen per document), so the gate's inputs are known exactly; hold and interval
are a second or so."""

import json
import sqlite3
import threading
import time
import urllib.parse

import pwtest
from cp_util import ADMIN, DATAPLANE, VIEWER, ControlPlane, expect, fleet

GOOD = "warn"  # a fleet document's log level says how the fakes behave on it
BAD = "error"  # 50% errors
SLOW = "debug"  # no errors, but every request lands in the 1000 ms bucket


class FakeDataplane:
    """Long-polls its config, ACKs what it gets (or NACKs it when nack(doc) says so), and heartbeats
    every `tick` s with traffic counters cumulative since it runs its version: `rate` requests a
    tick, errors and latencies as the document's log level says. Records every version it got."""

    def __init__(self, cp, dp_id, labels=None, rate=20, tick=0.1, nack=None):
        self.cp, self.id, self.labels, self.rate, self.tick, self.nack = cp, dp_id, labels or {}, rate, tick, nack
        self.version = 0  # what it runs
        self.doc = None
        self.seen = []  # every version handed to it
        self.counts = None
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self._reset()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _reset(self):
        self.counts = {"requests": 0, "errors": 0, "latency_ms_buckets": [0] * 14}

    def _call(self, method, path, body=None, timeout=5.0):
        h = {"Authorization": "Bearer " + DATAPLANE}
        try:
            s, _, data = pwtest.request(self.cp.port, method, path, body, h, timeout)
        except OSError:
            time.sleep(0.1)  # the control plane is down (kill -9 tests): try again
            return None, None
        return s, (json.loads(data) if data else None)

    def _traffic(self):
        level = (self.doc or {}).get("log", {}).get("level")
        c = self.counts
        c["requests"] += self.rate
        if level == BAD:
            c["errors"] += self.rate // 2
        c["latency_ms_buckets"][9 if level == SLOW else 3] += self.rate
        return {"version": self.version, "services": {"eth": json.loads(json.dumps(c))}}

    def _report(self, applied=True, error=None, version=None):
        body = {"version": self.version if version is None else version, "applied": applied, "labels": self.labels}
        if error:
            body["error"] = error
        if applied and self.version > 0:
            body["traffic"] = self._traffic()
        self._call("POST", f"/v1/dataplanes/{self.id}/status", body)

    def _run(self):
        labels = urllib.parse.quote(json.dumps(self.labels))
        next_beat = 0
        while not self.stop_ev.is_set():
            s, b = self._call("GET", f"/v1/dataplanes/{self.id}/config?version={self.version}&wait=100ms&labels={labels}")
            if s == 200:
                with self.lock:
                    self.seen.append(b["version"])
                if self.nack is not None and self.nack(b["document"]):
                    self._report(False, "fake: refused, upstream http://user:hunter2@10.0.0.9:8545/key0123 said no",
                                 b["version"])
                else:
                    with self.lock:
                        self.version, self.doc = b["version"], b["document"]
                        self._reset()
                    self._report()
            if time.time() >= next_beat:
                with self.lock:
                    self._report()
                next_beat = time.time() + self.tick

    def saw(self, version):
        with self.lock:
            return version in self.seen

    def stop(self):
        self.stop_ev.set()
        self.thread.join(5)


def wait_for(what, fn, timeout=15.0, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def rollout(canary=None, steps=((25, "1s"), (50, "1s")), interval="1s", min_requests=50, failures_allowed=1, **gate):
    r = {"steps": [{"percent": p, "hold": h} for p, h in steps],
         "gate": dict(interval=interval, min_requests=min_requests, failures_allowed=failures_allowed, **gate)}
    if canary is not None:
        r["canary"] = canary
    return r


def with_rollout(doc, ro, **more):
    doc = dict(doc)
    doc["rollout"] = ro
    doc.update(more)
    return doc


def get_rollout(cp, rid):
    return expect(cp.call("GET", f"/v1/rollouts/{rid}"), 200)[2]


def fleet_of(cp, n, **kw):
    """v1 (a good document) stored and n fakes running it."""
    expect(cp.call("PUT", "/v1/config", fleet(level=GOOD)), 201)
    dps = [FakeDataplane(cp, f"dp{i}", **kw) for i in range(n)]
    wait_for("every fake on v1", lambda: all(d.version == 1 for d in dps))
    return dps


def events(cp):
    return expect(cp.call("GET", "/v1/events?limit=1000"), 200)[2]["events"]


def metric(cp, line_start):
    text = expect(cp.request("GET", "/metrics"), 200)[2].decode()
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return None


@pwtest.test
def test_good_version_promoted():
    cp = ControlPlane()
    dps = fleet_of(cp, 4)
    time.sleep(2)  # traffic on v1 before the rollout: not part of its first window
    b = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(level=GOOD, conns=7), rollout({"percent": 25}))), 201)[2]
    assert b["version"] == 2 and b["rollout"]["state"] == "progressing", b
    rid = b["rollout"]["id"]
    ro = get_rollout(cp, rid)
    assert ro["version"] == 2 and ro["from_version"] == 1 and ro["step"] == 0 and len(ro["dataplanes"]) == 1, ro
    canary = ro["dataplanes"][0]
    wait_for("the canary on v2", lambda: next(d for d in dps if d.id == canary).version == 2)
    time.sleep(0.3)
    assert [d.id for d in dps if d.saw(2)] == [canary], "only the canary gets the new version at step 0"
    # GET /v1/dataplanes: the others are synced on v1, the canary on v2
    listed = {d["id"]: d for d in expect(cp.call("GET", "/v1/dataplanes"), 200)[2]["dataplanes"]}
    assert all(d["state"] == "synced" for d in listed.values()), listed
    assert metric(cp, 'pathway_control_dataplanes{state="synced"}') == 4
    t = listed[canary]["traffic"]
    assert t["version"] == 2 and t["requests"] > 0 and t["errors"] == 0 and t["p99_ms"] == 10, t
    ro = wait_for("promotion", lambda: (lambda r: r if r["state"] == "promoted" else None)(get_rollout(cp, rid)), 20)
    assert [len(s) for s in ro["sets"]] == [1, 2] and ro["sets"][1][0] == canary, ro["sets"]
    assert any(v["result"] == "pass" and v["step"] == 1 for v in ro["verdicts"]), ro["verdicts"]
    assert all(v["result"] != "fail" for v in ro["verdicts"]), ro["verdicts"]
    p = next(v for v in ro["verdicts"] if v["result"] == "pass")
    assert p["canary"]["requests"] >= 50 and p["canary"]["error_rate"] == 0 and p["canary"]["p99_ms"] == 10, p
    assert p["baseline"]["requests"] > 0 and p["baseline_source"] == "window", p
    first = ro["verdicts"][0]  # three baseline dataplanes against one canary, over the same second
    assert first["baseline"]["requests"] <= 4.5 * first["canary"]["requests"], first
    wait_for("every fake on v2", lambda: all(d.version == 2 for d in dps))
    actions = [e["action"] for e in events(cp)]
    for a in ("rollout_start", "rollout_step", "rollout_promote"):
        assert a in actions, actions
    assert expect(cp.call("GET", "/v1/versions"), 200)[2]["active_version"] == 2
    assert metric(cp, 'pathway_rollout_state{state="promoted"}') == 1
    assert metric(cp, 'pathway_rollout_state{state="progressing"}') == 0
    assert metric(cp, 'pathway_rollout_gate_verdicts_total{result="pass"}') >= 2
    listed = expect(cp.call("GET", "/v1/rollouts", token=VIEWER), 200)[2]
    assert listed["current"] is None and listed["rollouts"][0]["id"] == rid, listed
    for d in dps:
        d.stop()


@pwtest.test
def test_a_dataplane_that_stopped_reporting_is_not_in_the_baseline():
    cp = ControlPlane(heartbeat="1s")
    dps = fleet_of(cp, 4)
    time.sleep(1)
    gone = dps.pop()
    gone.stop()  # it reported v1 traffic, then nothing more (gone, or forgotten on another replica)
    time.sleep(1.5)
    b = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(level=GOOD, conns=7), rollout({"percent": 25}))), 201)[2]
    rid = b["rollout"]["id"]
    ro = wait_for("a verdict", lambda: (lambda r: r if r["verdicts"] else None)(get_rollout(cp, rid)), 20)
    assert gone.id not in ro["dataplanes"], ro
    v = ro["verdicts"][0]
    assert v["canary_dataplanes"] == 1 and v["baseline_dataplanes"] == 2, v
    for d in dps:
        d.stop()


@pwtest.test
def test_bad_version_rolled_back_by_itself():
    cp = ControlPlane()
    dps = fleet_of(cp, 4)
    start = time.time()
    b = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(level=BAD), rollout({"percent": 25}, failures_allowed=1))), 201)[2]
    rid = b["rollout"]["id"]
    ro = wait_for("the rollback", lambda: (lambda r: r if r["state"] == "rolled_back" else None)(get_rollout(cp, rid)), 15, 0.02)
    took = time.time() - start
    # (failures_allowed + 1) × interval, plus one push and the loop's wake-up
    assert took <= 2 * 1.0 + 1.0, took
    canary = ro["sets"][0][0]
    assert len(ro["sets"]) == 1 and ro["rollback_version"] == 3, ro
    fails = [v for v in ro["verdicts"] if v["result"] == "fail"]
    assert len(fails) == 2, ro["verdicts"]
    f = fails[-1]
    assert 0.45 <= f["canary"]["error_rate"] <= 0.55 and f["baseline"]["error_rate"] == 0, f
    assert f["canary"]["requests"] >= 50 and f["baseline"]["requests"] >= 50 and f["window"]["ms"] >= 900, f
    assert "error rate" in f["reason"], f
    v3 = expect(cp.call("GET", "/v1/versions/3"), 200)[2]
    assert v3["kind"] == "rollback" and v3["source_version"] == 1 and v3["author"] == "rollout", v3
    assert v3["hash"] == expect(cp.call("GET", "/v1/versions/1"), 200)[2]["hash"]
    wait_for("every fake on v3", lambda: all(d.version == 3 for d in dps))
    assert [d.id for d in dps if d.saw(2)] == [canary], "the non-canaries never saw the bad version"
    ev = next(e for e in events(cp) if e["action"] == "rollout_rollback")
    detail = json.loads(ev["message"])
    assert detail["canary"]["error_rate"] >= 0.45 and detail["baseline"]["error_rate"] == 0, detail
    assert metric(cp, 'pathway_rollout_state{state="rolled_back"}') == 1
    assert metric(cp, 'pathway_rollout_gate_verdicts_total{result="fail"}') == 2
    for d in dps:
        d.stop()


@pwtest.test
def test_slow_version_fails_on_p99():
    cp = ControlPlane()
    dps = fleet_of(cp, 4)
    b = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(level=SLOW), rollout({"percent": 25}, failures_allowed=0))), 201)[2]
    ro = wait_for("the rollback", lambda: (lambda r: r if r["state"] == "rolled_back" else None)(get_rollout(cp, b["rollout"]["id"])))
    f = [v for v in ro["verdicts"] if v["result"] == "fail"][-1]
    assert f["canary"]["p99_ms"] == 1000 and f["baseline"]["p99_ms"] == 10 and "p99" in f["reason"], f
    for d in dps:
        d.stop()


@pwtest.test
def test_too_little_traffic_stays_inconclusive():
    cp = ControlPlane()
    dps = fleet_of(cp, 4, rate=1)
    b = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(level=GOOD, conns=9),
                                                         rollout({"percent": 25}, steps=((25, "0s"),), min_requests=1000))), 201)[2]
    rid = b["rollout"]["id"]
    time.sleep(3.5)
    ro = get_rollout(cp, rid)
    assert ro["state"] == "progressing" and ro["step"] == 0, ro
    assert len(ro["verdicts"]) >= 2 and all(v["result"] == "inconclusive" for v in ro["verdicts"]), ro["verdicts"]
    assert "fewer than min_requests" in ro["verdicts"][0]["reason"], ro["verdicts"][0]
    assert sum(d.saw(2) for d in dps) == 1
    for d in dps:
        d.stop()


@pwtest.test
def test_nacking_canary_aborts_at_once():
    cp = ControlPlane()
    expect(cp.call("PUT", "/v1/config", fleet(level=GOOD)), 201)
    refuse = lambda doc: doc.get("defaults", {}).get("pool", {}).get("max_conns_per_host") == 11  # noqa: E731
    dps = [FakeDataplane(cp, "canary-1", labels={"canary": "true"}, nack=refuse)] + \
          [FakeDataplane(cp, f"dp{i}", labels={"canary": "false"}) for i in range(3)]
    wait_for("every fake on v1", lambda: all(d.version == 1 for d in dps))
    listed = {d["id"]: d for d in expect(cp.call("GET", "/v1/dataplanes"), 200)[2]["dataplanes"]}
    assert listed["canary-1"]["labels"] == {"canary": "true"}, listed["canary-1"]
    start = time.time()
    # a label canary is step 0 alone, whatever steps[0].percent says
    ro_spec = rollout({"labels": {"canary": "true"}}, steps=((25, "1m"), (50, "1m")), interval="1m")
    b = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(level=GOOD, conns=11), ro_spec)), 201)[2]
    ro = wait_for("the abort", lambda: (lambda r: r if r["state"] == "aborted" else None)(get_rollout(cp, b["rollout"]["id"])), 5, 0.02)
    assert time.time() - start < 2.0
    assert ro["sets"] == [["canary-1"]] and "canary-1 rejected version 2" in ro["reason"], ro
    assert ro["verdicts"][-1]["result"] == "fail" and ro["verdicts"][-1]["dataplane"] == "canary-1", ro["verdicts"]
    assert "hunter2" in ro["reason"], ro["reason"]
    seen_by_viewer = json.dumps(expect(cp.call("GET", f"/v1/rollouts/{ro['id']}", token=VIEWER), 200)[2])
    seen_by_viewer += json.dumps(expect(cp.call("GET", "/v1/rollouts", token=VIEWER), 200)[2])
    assert "canary-1 rejected version 2" in seen_by_viewer and "hunter2" not in seen_by_viewer, seen_by_viewer
    wait_for("every fake on v3", lambda: all(d.version == 3 for d in dps))
    assert not any(d.saw(2) for d in dps[1:])
    for d in dps:
        d.stop()


@pwtest.test
def test_kill9_mid_rollout_resumes_at_its_step():
    cp = ControlPlane()
    dps = fleet_of(cp, 4)
    spec = rollout({"percent": 25}, steps=((25, "1s"), (50, "4s"), (75, "1s")))
    rid = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(level=GOOD, conns=5), spec)), 201)[2]["rollout"]["id"]
    before = wait_for("step 1", lambda: (lambda r: r if r["step"] == 1 else None)(get_rollout(cp, rid)), 15)
    cp.kill9()
    time.sleep(0.3)
    cp.start()
    after = get_rollout(cp, rid)
    assert after["state"] == "progressing" and after["step"] == 1 and after["sets"] == before["sets"], (before, after)
    assert after["step_started_at"] == before["step_started_at"], (before, after)
    # the set of step 1 keeps its version across the restart, the others keep v1
    time.sleep(0.5)
    on_v2 = sorted(d.id for d in dps if d.version == 2)
    assert on_v2 == sorted(after["sets"][1]), (on_v2, after["sets"])
    ro = wait_for("promotion", lambda: (lambda r: r if r["state"] == "promoted" else None)(get_rollout(cp, rid)), 20)
    assert [len(s) for s in ro["sets"]] == [1, 2, 3], ro["sets"]
    wait_for("every fake on v2", lambda: all(d.version == 2 for d in dps))
    for d in dps:
        d.stop()


@pwtest.test
def test_failed_out_before_a_kill_rolls_back_after_restart():
    # the window that failed the rollout out was recorded, and the process died before the rollback
    # version: the row says so, and the restarted control plane finishes the job at once
    cp = ControlPlane()
    dps = fleet_of(cp, 2)
    spec = rollout({"percent": 50}, steps=((50, "1m"),), interval="1m", failures_allowed=1)
    rid = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(level=GOOD, conns=5), spec)), 201)[2]["rollout"]["id"]
    cp.kill9()
    db = sqlite3.connect(cp.db)
    db.execute("UPDATE rollouts SET failures = 2 WHERE id = ?", (rid,))
    db.commit()
    db.close()
    cp.start()
    ro = wait_for("the rollback", lambda: (lambda r: r if r["state"] == "rolled_back" else None)(get_rollout(cp, rid)), 5)
    assert ro["rollback_version"] == 3 and "failed 2 intervals" in ro["reason"], ro
    wait_for("every fake on v3", lambda: all(d.version == 3 for d in dps))
    for d in dps:
        d.stop()


@pwtest.test
def test_pause_resume_promote_abort():
    cp = ControlPlane()
    dps = fleet_of(cp, 4)
    spec = rollout({"percent": 25}, steps=((25, "1s"), (50, "1s")))
    rid = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(level=GOOD, conns=3), spec)), 201)[2]["rollout"]["id"]
    expect(cp.call("POST", f"/v1/rollouts/{rid}/pause", token=VIEWER), 403)
    ro = expect(cp.call("POST", f"/v1/rollouts/{rid}/pause"), 200)[2]
    assert ro["state"] == "paused" and ro["paused_at"], ro
    expect(cp.call("POST", f"/v1/rollouts/{rid}/pause"), 409)
    n = len(ro["verdicts"])
    time.sleep(2.5)  # beyond the hold and two intervals: nothing moves while paused
    ro = get_rollout(cp, rid)
    assert ro["state"] == "paused" and ro["step"] == 0 and len(ro["verdicts"]) == n, ro
    assert sum(d.version == 2 for d in dps) == 1
    ro = expect(cp.call("POST", f"/v1/rollouts/{rid}/resume"), 200)[2]
    assert ro["state"] == "progressing", ro
    wait_for("a verdict after resume", lambda: len(get_rollout(cp, rid)["verdicts"]) > n, 5)
    ro = expect(cp.call("POST", f"/v1/rollouts/{rid}/promote"), 200)[2]
    assert ro["state"] == "promoted" and "promoted by ops" in ro["reason"], ro
    wait_for("every fake on v2", lambda: all(d.version == 2 for d in dps))
    expect(cp.call("POST", f"/v1/rollouts/{rid}/abort"), 409)

    rid2 = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(level=GOOD, conns=4), spec)), 201)[2]["rollout"]["id"]
    assert rid2 != rid
    ro = expect(cp.call("POST", f"/v1/rollouts/{rid2}/abort"), 200)[2]
    assert ro["state"] == "aborted" and ro["rollback_version"] == 4, ro
    v4 = expect(cp.call("GET", "/v1/versions/4"), 200)[2]
    assert v4["kind"] == "rollback" and v4["source_version"] == 2, v4
    wait_for("every fake on v4", lambda: all(d.version == 4 for d in dps))
    actions = [e["action"] for e in events(cp)]
    for a in ("rollout_pause", "rollout_resume", "rollout_promote", "rollout_abort"):
        assert a in actions, actions
    page = expect(cp.call("GET", "/v1/rollouts?limit=1"), 200)[2]
    assert [r["id"] for r in page["rollouts"]] == [rid2] and page["next_before"] == rid2, page
    page = expect(cp.call("GET", f"/v1/rollouts?limit=1&before={rid2}"), 200)[2]
    assert [r["id"] for r in page["rollouts"]] == [rid] and "verdicts" not in page["rollouts"][0], page
    expect(cp.call("GET", "/v1/rollouts?limit=0"), 400)
    expect(cp.call("POST", "/v1/rollouts/99/resume"), 404)
    expect(cp.call("POST", "/v1/rollouts/x/resume"), 400)
    for d in dps:
        d.stop()


@pwtest.test
def test_one_rollout_at_a_time():
    cp = ControlPlane()
    dps = fleet_of(cp, 2)
    spec = rollout({"percent": 50}, steps=((50, "1m"),), interval="1m")
    rid = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(level=GOOD, conns=3), spec)), 201)[2]["rollout"]["id"]
    for method, path, body in (("PUT", "/v1/config", fleet(level=GOOD, conns=4)),
                               ("PATCH", "/v1/config", {"defaults": {"pool": {"max_conns_per_host": 5}}}),
                               ("POST", "/v1/rollback", {"to": 1})):
        s, _, b = expect(cp.call(method, path, body), 409)
        assert b["rollout"] == {"id": rid, "state": "progressing"} and "force" in b["error"], b
    assert expect(cp.call("GET", "/v1/versions"), 200)[2]["active_version"] == 2
    # force: the rollout in progress ends (aborted, superseded); the new one starts from v1 again
    b = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(level=GOOD, conns=6), spec, force=True)), 201)[2]
    assert b["version"] == 3 and b["rollout"]["id"] != rid, b
    old = get_rollout(cp, rid)
    assert old["state"] == "aborted" and "superseded by version 3" in old["reason"], old
    new = get_rollout(cp, b["rollout"]["id"])
    assert new["from_version"] == 1, new
    # force without a rollout: every dataplane gets the version at once
    b = expect(cp.call("PATCH", "/v1/config", {"defaults": {"pool": {"max_conns_per_host": 8}}, "force": True}), 201)[2]
    assert "rollout" not in b, b
    wait_for("every fake on v4", lambda: all(d.version == 4 for d in dps))
    assert "force" not in expect(cp.call("GET", "/v1/config"), 200)[2]
    # a rollback rolled out: beside "to"
    b = expect(cp.call("POST", "/v1/rollback", {"to": 1, "rollout": spec}), 201)[2]
    assert b["version"] == 5 and b["kind"] == "rollback" and b["rollout"]["state"] == "progressing", b
    ro = get_rollout(cp, b["rollout"]["id"])
    assert ro["version"] == 5 and ro["from_version"] == 4 and len(ro["dataplanes"]) == 1, ro
    wait_for("the canary on v5", lambda: sum(d.version == 5 for d in dps) == 1)
    time.sleep(0.3)
    assert sum(d.version == 4 for d in dps) == 1
    for d in dps:
        d.stop()


@pwtest.test
def test_validation_errors():
    cp = ControlPlane()
    # nothing to roll out from yet
    s, _, b = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(), rollout({"percent": 10}))), 409)
    assert "no version is active" in b["error"], b
    expect(cp.call("PUT", "/v1/config", fleet()), 201)
    cases = [
        ({"steps": []}, "rollout.steps"),
        ({"steps": [{"percent": 10}]}, "rollout.steps[0].hold"),
        ({"steps": [{"percent": 0, "hold": "1s"}]}, "rollout.steps[0].percent"),
        ({"steps": [{"percent": 101, "hold": "1s"}]}, "rollout.steps[0].percent"),
        ({"steps": [{"percent": 50, "hold": "1s"}, {"percent": 20, "hold": "1s"}]}, "rollout.steps[1].percent: steps must grow"),
        ({"steps": [{"percent": 10, "hold": "soon"}]}, "rollout.steps[0].hold"),
        ({"canary": {"percent": 0}, "steps": [{"percent": 10, "hold": "1s"}]}, "rollout.canary.percent"),
        ({"canary": {"labels": {}}, "steps": [{"percent": 10, "hold": "1s"}]}, "rollout.canary.labels"),
        ({"canary": {"labels": {"a": 1}}, "steps": [{"percent": 10, "hold": "1s"}]}, "rollout.canary.labels.a"),
        ({"canary": {"percent": 5, "labels": {"a": "b"}}, "steps": [{"percent": 10, "hold": "1s"}]}, "rollout.canary"),
        ({"steps": [{"percent": 10, "hold": "1s"}], "gate": {"max_error_rate_increase": -1}},
         "rollout.gate.max_error_rate_increase"),
        ({"steps": [{"percent": 10, "hold": "1s"}], "gate": {"interval": "1ms"}}, "rollout.gate.interval"),
        ({"steps": [{"percent": 10, "hold": "1s"}], "gate": {"failures_allowed": -1}}, "rollout.gate.failures_allowed"),
        ({"steps": [{"percent": 10, "hold": "1s"}], "gate": {"min_requests": "many"}}, "rollout.gate.min_requests"),
        ({"steps": [{"percent": 10, "hold": "1s"}], "gate": {"bogus": 1}}, "rollout.gate.bogus: unknown key"),
        ({"steps": [{"percent": 10, "hold": "1s"}], "extra": 1}, "rollout.extra: unknown key"),
        ("fast", "rollout: must be an object"),
    ]
    # validate reads a body as PUT does: the rollout checked and taken out of the document
    b = expect(cp.call("POST", "/v1/config/validate", with_rollout(fleet(conns=2), rollout({"percent": 10}))), 200)[2]
    assert b["valid"] and "rollout" not in b["document"] and b["rollout"]["canary"] == {"percent": 10}, b
    assert b["rollout"]["gate"]["interval_ms"] == 1000, b
    expect(cp.call("POST", "/v1/config/validate", with_rollout(fleet(conns=2), {"steps": []})), 400)
    for spec, want in cases:
        for method, body in (("PUT", with_rollout(fleet(conns=2), spec)), ("POST", {"to": 1, "rollout": spec})):
            s, _, b = expect(cp.call(method, "/v1/config" if method == "PUT" else "/v1/rollback", body), 400)
            assert b["error"].startswith(want), (spec, b)
    s, _, b = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(conns=2), rollout({"percent": 10}), force="yes")), 400)
    assert b["error"].startswith("force:"), b
    # valid, but no dataplane to canary on
    s, _, b = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(conns=2), rollout({"percent": 10}))), 409)
    assert "no dataplane is connected" in b["error"], b
    dp = FakeDataplane(cp, "dp0", labels={"region": "eu"})
    wait_for("dp0 on v1", lambda: dp.version == 1)
    s, _, b = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(conns=2), rollout({"labels": {"region": "us"}}))), 409)
    assert "rollout.canary.labels" in b["error"] and "us" in b["error"], b
    assert expect(cp.call("GET", "/v1/versions"), 200)[2]["active_version"] == 1, "nothing stored on an error"
    # heartbeats: a malformed traffic object is a 400 naming its key
    h = {"Authorization": "Bearer " + DATAPLANE}
    for traffic, want in (({"services": {}}, "traffic.version"),
                          ({"version": 1, "services": {"eth": {"requests": 1}}}, "traffic.services.eth.errors"),
                          ({"version": 1, "services": {"eth": {"requests": 1, "errors": 2}}}, "traffic.services.eth.errors"),
                          ({"version": 1, "services": {"eth": {"requests": 1, "errors": 0, "latency_ms_buckets": [1]}}},
                           "traffic.services.eth.latency_ms_buckets")):
        s, _, body = pwtest.request_json(cp.port, "POST", "/v1/dataplanes/dp9/status",
                                         {"version": 1, "applied": True, "traffic": traffic}, h)
        assert s == 400 and body["error"].startswith(want), (traffic, body)
    s, _, body = pwtest.request_json(cp.port, "GET", "/v1/dataplanes/dp9/config?labels=%7B%22a%22%3A1%7D", None, h)
    assert s == 400 and body["error"].startswith("labels.a"), body
    expect(cp.call("GET", "/v1/rollouts/1"), 404)
    assert expect(cp.call("GET", "/v1/rollouts", token=VIEWER), 200)[2]["rollouts"] == []
    dp.stop()


@pwtest.test
def test_configured_default_rollout():
    cp = ControlPlane(extra_config="rollout: {canary: {percent: 50}, steps: [{percent: 50, hold: 1m}], gate: {interval: 1m}}\n")
    # the first version has nothing to roll out from: it goes to everyone
    b = expect(cp.call("PUT", "/v1/config", fleet()), 201)[2]
    assert "rollout" not in b, b
    # nor does a write while no dataplane is connected (nobody to protect), where an explicit one gets 409
    b = expect(cp.call("PUT", "/v1/config", fleet(conns=2)), 201)[2]
    assert "rollout" not in b and b["version"] == 2, b
    expect(cp.call("PUT", "/v1/config", with_rollout(fleet(conns=9), rollout({"percent": 50}))), 409)
    dps = [FakeDataplane(cp, f"dp{i}") for i in range(2)]
    wait_for("every fake on v2", lambda: all(d.version == 2 for d in dps))
    b = expect(cp.call("PUT", "/v1/config", fleet(conns=3)), 201)[2]
    assert b["rollout"]["state"] == "progressing", b
    ro = get_rollout(cp, b["rollout"]["id"])
    assert ro["canary"] == {"percent": 50} and ro["steps"] == [{"percent": 50, "hold_ms": 60000, "hold": "1m"}], ro
    assert ro["gate"]["interval"] == "1m" and ro["gate"]["interval_ms"] == 60000, ro
    # "rollout": null opts out (with force, past the rollout in progress)
    b = expect(cp.call("PUT", "/v1/config", with_rollout(fleet(conns=4), None, force=True)), 201)[2]
    assert "rollout" not in b, b
    wait_for("every fake on v4", lambda: all(d.version == 4 for d in dps))
    for d in dps:
        d.stop()


if __name__ == "__main__":
    pwtest.main()
