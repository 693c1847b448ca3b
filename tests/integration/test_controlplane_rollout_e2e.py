"""Safe rollouts end to end: a real pathway-control, four real managed pathway dataplanes under
steady load, and mock upstreams on 127.0.0.1. The gate reads the traffic figures the dataplanes
put in their heartbeats. A good version is promoted with no failed request; a version that points
the service at an upstream answering 500 reaches only the canary and is rolled back by itself.
Hold and interval are a second."""

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cp_util  # noqa: E402
import dp_util  # noqa: E402
import pwtest  # noqa: E402
from pwtest import main, test  # noqa: E402


def doc(port, conns=50):
    return {"log": {"level": "info"},
            "defaults": {"pool": {"max_conns_per_host": conns}},
            "services": [{"id": "eth", "endpoints": [{"url": f"http://127.0.0.1:{port}"}]}]}


class Fleet:
    """A control plane seeded with version 1 and n managed dataplanes on it, one good mock."""

    def __init__(self, n=4):
        self.mock, self.mport = dp_util.start_mock()
        self.dir = tempfile.mkdtemp(prefix="pw-rollout-")
        seed = pwtest.write_file(self.dir, "seed.json", json.dumps(doc(self.mport)))
        self.cp = cp_util.ControlPlane(seed=seed)
        self.dps = []
        for i in range(n):
            extra = (f"control_plane:\n"
                     f"  url: http://127.0.0.1:{self.cp.port}\n"
                     f"  token_file: {os.path.join(self.cp.dir, 'dataplane.token')}\n"
                     f"  id: dp-{i}\n"
                     f"  state_dir: {os.path.join(self.dir, f'state-{i}')}\n"
                     f"  heartbeat_interval: 200ms\n"
                     f"  labels: {{rack: r{i % 2}}}\n")
            self.dps.append(dp_util.Pathway([("eth", [f"http://127.0.0.1:{self.mport}"], "")], extra=extra, threads=1,
                                            tmpdir=tempfile.mkdtemp(prefix=f"pw-dp{i}-", dir=self.dir)))
        for i in range(n):
            self.wait_running(i, 1)
        # the evidence comes from the dataplanes' heartbeats
        dp_util.wait_for(lambda: all(d.get("traffic") for d in self.dataplanes().values()), 5.0, "traffic in heartbeats")

    def dataplanes(self):
        body = cp_util.expect(self.cp.call("GET", "/v1/dataplanes"), 200)[2]
        return {d["id"]: d for d in body["dataplanes"]}

    def running(self, i):
        status, _, body = pwtest.request_json(self.dps[i].admin, "GET", "/config")
        assert status == 200, body
        return body["version"]

    def wait_running(self, i, version, timeout=15.0):
        dp_util.wait_for(lambda: self.running(i) == version, timeout, f"dp-{i} to run version {version}")

    def rollout(self, rid):
        return cp_util.expect(self.cp.call("GET", f"/v1/rollouts/{rid}"), 200)[2]

    def wait_state(self, rid, state, timeout=20.0):
        dp_util.wait_for(lambda: self.rollout(rid)["state"] == state, timeout, f"rollout {rid} {state}")
        return self.rollout(rid)


def load_on(f):
    """Two steady clients per dataplane (steady, not flat out: two cores serve the whole fleet)."""
    return dp_util.RelayLoad([d.port for d in f.dps], clients=2 * len(f.dps), pause=0.002)


# The p99 rule is proven with scripted figures in test_controlplane_rollout.py; here latencies are
# loopback noise on a shared machine (one bucket step is a ratio of 2 or more), so the gate judges
# errors only.
SPEC = {"canary": {"percent": 25}, "steps": [{"percent": 25, "hold": "1s"}, {"percent": 50, "hold": "1s"}],
        "gate": {"interval": "1s", "min_requests": 20, "failures_allowed": 1, "max_error_rate_increase": 0.01,
                 "max_p99_ratio": 50}}


@test
def good_version_promoted_under_load_with_no_failed_request():
    f = Fleet()
    load = load_on(f)
    time.sleep(1.0)
    body = dict(doc(f.mport, conns=40), rollout=SPEC)
    b = cp_util.expect(f.cp.call("PUT", "/v1/config", body), 201)[2]
    assert b["version"] == 2 and b["rollout"]["state"] == "progressing", b
    ro = f.wait_state(b["rollout"]["id"], "promoted")
    ok, failed = load.finish().by_port()
    assert sum(failed.values()) == 0, failed
    assert sum(ok.values()) > 200, ok
    assert [len(s) for s in ro["sets"]] == [1, 2], ro["sets"]
    passes = [v for v in ro["verdicts"] if v["result"] == "pass"]
    assert passes and all(v["canary"]["requests"] >= 20 and v["canary"]["errors"] == 0 for v in passes), ro["verdicts"]
    assert all(v["result"] != "fail" for v in ro["verdicts"]), ro["verdicts"]
    for i in range(4):
        f.wait_running(i, 2)
    labels = {d["id"]: d["labels"] for d in f.dataplanes().values()}
    assert labels["dp-1"].get("rack") == "r1" and "hostname" in labels["dp-1"], labels


@test
def bad_version_only_on_the_canary_and_rolled_back_by_itself():
    f = Fleet()
    bad_mock, bad_port = dp_util.start_mock("--status", "500")
    load = load_on(f)
    time.sleep(1.0)
    start = time.time()
    b = cp_util.expect(f.cp.call("PUT", "/v1/config", dict(doc(bad_port), rollout=SPEC)), 201)[2]
    rid = b["rollout"]["id"]
    canary = f.rollout(rid)["dataplanes"]
    assert len(canary) == 1, canary
    ro = f.wait_state(rid, "rolled_back", 15)
    took = time.time() - start
    ok, failed = load.finish().by_port()
    # (failures_allowed + 1) × interval, plus one push and a heartbeat's delay
    assert took <= 2 * 1.0 + 1.5, took
    assert ro["sets"] == [canary] and ro["rollback_version"] == 3, ro
    fails = [v for v in ro["verdicts"] if v["result"] == "fail"]
    assert len(fails) == 2 and fails[-1]["canary"]["error_rate"] > 0.5 and fails[-1]["baseline"]["error_rate"] == 0, fails
    ev = next(e for e in cp_util.expect(f.cp.call("GET", "/v1/events?limit=100"), 200)[2]["events"]
              if e["action"] == "rollout_rollback")
    figures = json.loads(ev["message"])
    assert figures["canary"]["requests"] >= 20 and figures["baseline"]["requests"] >= 20, figures
    # only the canary ever ran the bad version: the others' clients never failed
    canary_port = next(d.port for i, d in enumerate(f.dps) if f"dp-{i}" == canary[0])
    assert failed[canary_port] > 0, failed
    assert all(n == 0 for p, n in failed.items() if p != canary_port), failed
    for i in range(4):
        f.wait_running(i, 3)
    states = {d["id"]: (d["applied_version"], d["delivered_version"]) for d in f.dataplanes().values()}
    for dp_id, (applied, delivered) in states.items():
        assert applied == 3, states
    bad = cp_util.expect(f.cp.call("GET", f"/v1/rollouts/{rid}"), 200)[2]
    assert bad["version"] == 2
    assert dp_util.mock_stats(bad_port)["requests"] > 0


def ctl(f, *args, timeout=30):
    """pathwayctl against the fleet's control plane: (exit code, stdout, stderr)."""
    env = dict(os.environ, PATHWAY_URL=f"http://127.0.0.1:{f.cp.port}", PATHWAY_TOKEN=cp_util.ADMIN, NO_COLOR="1",
               XDG_CONFIG_HOME=tempfile.mkdtemp(prefix="pw-ctl-xdg-", dir=f.dir))
    r = subprocess.run([pwtest.binary("pathwayctl"), *args], env=env, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


@test
def pathwayctl_rolls_out_and_watches_to_the_end():
    f = Fleet()
    bad_mock, bad_port = dp_util.start_mock("--status", "500")
    load = load_on(f)
    time.sleep(1.0)
    flags = ["--canary", "percent=25", "--steps", "25,50", "--hold", "1s", "--gate-interval", "1s", "--min-requests", "20",
             "--max-p99-ratio", "50"]
    good = pwtest.write_file(f.dir, "good.json", json.dumps(doc(f.mport, conns=30)))
    rc, out, err = ctl(f, "apply", good, *flags)
    assert rc == 0 and "rollout 1 progressing" in out, (rc, out, err)
    rc, out, err = ctl(f, "rollout", "status", "--watch")
    assert rc == 0 and "promoted" in out, (rc, out, err)
    bad = pwtest.write_file(f.dir, "bad.json", json.dumps(doc(bad_port)))
    rc, out, err = ctl(f, "apply", bad, *flags)
    assert rc == 0 and "rollout 2 progressing" in out, (rc, out, err)
    rc, out, err = ctl(f, "rollout", "status", "--watch")
    assert rc == 1 and "rolled_back" in out, (rc, out, err)
    ok, failed = load.finish().by_port()
    assert f.rollout(2)["state"] == "rolled_back" and f.rollout(2)["rollback_version"] == 4
    canary = f.rollout(2)["sets"][0][0]
    assert all(n == 0 for i, (p, n) in enumerate(failed.items()) if f"dp-{i}" != canary), failed


if __name__ == "__main__":
    main()
