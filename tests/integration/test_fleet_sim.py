"""A fleet of 200 simulated dataplanes (tools/fleet_sim.py) against a real pathway-control on
sqlite: every dataplane receives and ACKs each push within a second, admin calls stay fast while
the fleet is connected, and GET /v1/dataplanes lists all 200 as synced. Bounded: 200 dataplanes,
5 pushes, under a minute on loopback."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cp_util  # noqa: E402
import pwtest  # noqa: E402

sys.path.insert(0, os.path.join(pwtest.SOURCE_DIR, "tools"))
import fleet_sim  # noqa: E402

N = 200


def run_fleet(cp, *more):
    argv = ["--url", f"http://127.0.0.1:{cp.port}", "-n", str(N), "--token", cp_util.DATAPLANE, "--admin-token", cp_util.ADMIN,
            "--pid", str(cp.proc.p.pid), "--quiet"] + list(more)
    args = fleet_sim.parse_args(argv)
    fleet_sim.raise_nofile(2 * N + 256)
    result = asyncio.run(fleet_sim.bench(args))
    print(fleet_sim.summary(result), flush=True)
    return result


@pwtest.test
def test_fleet_of_200_acks_every_push_within_a_second():
    # limits for the fleet: two connections per dataplane (its long poll and its heartbeat's)
    cp = cp_util.ControlPlane(extra_config="max_connections: 1024\nmax_long_polls: 512\nmax_dataplanes: 512\n", nofile=2048)
    cp_util.expect(cp.call("PUT", "/v1/config", cp_util.fleet()), 201)
    r = run_fleet(cp, "--bench", "--pushes", "5", "--interval", "0.5", "--steady", "2", "--admin-rate", "10")
    assert r["ok"], r.get("failure")
    assert r["synced"] == N, r
    assert len(r["pushes"]) == 5, r["pushes"]
    for p in r["pushes"]:
        assert p["acked"] == N, p
        assert p["receive"]["n"] == N, p
    # push -> ACK, every dataplane's latency of every push pooled
    assert r["ack_pooled"]["n"] == 5 * N, r["ack_pooled"]
    assert r["ack_pooled"]["p99"] < 1000, r["ack_pooled"]
    # admin calls while the fleet is connected: answered, and fast
    admin = r["admin"]
    assert not r["admin_errors"], r["admin_errors"]
    assert admin["/v1/versions"]["n"] >= 10 and admin["/v1/dataplanes?limit=100"]["n"] >= 10, admin
    assert admin["quiet"]["p99"] < 250, admin
    assert admin["all"]["p99"] < 1000, admin
    # the control plane's view: all 200 listed and synced on the last version
    assert r["dataplanes_listed"] == N, r
    assert r["dataplane_states"] == {"synced": N}, r["dataplane_states"]
    status, _, body = cp.call("GET", "/v1/dataplanes?limit=1000")
    assert status == 200
    last = r["pushes"][-1]["version"]
    sims = [d for d in body["dataplanes"] if d["id"].startswith("sim-")]
    assert len(sims) == N and all(d["applied_version"] == last for d in sims), [d for d in sims if d["applied_version"] != last][:3]
    # no failed call on the dataplanes' side, no poll turned away, and the process was measured
    assert not r["errors"], r["errors"]
    assert r["refused_polls"] == 0
    pid = str(cp.proc.p.pid)
    assert r["cp_connected"][pid]["rss_bytes"] > 0 and r["per_dataplane"][pid]["rss_bytes_per_dataplane"] is not None


@pwtest.test
def test_a_fleet_beyond_max_long_polls_is_told_to_come_back():
    # what an operator sees who did not raise the limits: polls beyond max_long_polls are answered
    # at once (304, Retry-After) and asked again; the simulator counts them, nothing fails
    cp = cp_util.ControlPlane(extra_config="max_connections: 1024\nmax_long_polls: 50\nmax_dataplanes: 512\n", nofile=2048)
    cp_util.expect(cp.call("PUT", "/v1/config", cp_util.fleet()), 201)
    r = run_fleet(cp, "--bench", "--pushes", "1", "--interval", "0", "--steady", "2", "--admin-rate", "5")
    assert r["ok"], r.get("failure")
    assert r["pushes"][0]["acked"] == N
    assert r["refused_polls"] > 0, r
    assert not r["errors"], r["errors"]


if __name__ == "__main__":
    pwtest.main()
