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


def check_round(cp, r):
    """The assertions that hold whatever the machine's load; returns the timing figures."""
    assert r["ok"], r.get("failure")
    assert r["synced"] == N, r
    assert len(r["pushes"]) == 5, r["pushes"]
    for p in r["pushes"]:
        assert p["acked"] == N, p
        assert p["receive"]["n"] == N, p
    assert r["ack_pooled"]["n"] == 5 * N, r["ack_pooled"]
    admin = r["admin"]
    assert not r["admin_errors"], r["admin_errors"]
    assert admin["/v1/versions"]["n"] >= 10 and admin["/v1/dataplanes?limit=100"]["n"] >= 10, admin
    # the control plane's view: all 200 listed and synced on the last version
    assert r["dataplanes_listed"] == N, r
    assert r["dataplane_states"] == {"synced": N}, (r["dataplane_states"], r.get("dataplane_state_examples"))
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
    return {"ack_p99_ms": r["ack_pooled"]["p99"], "admin_quiet_p99_ms": admin["quiet"]["p99"], "admin_p99_ms": admin["all"]["p99"],
            "load": r["loadavg_start"]}


@pwtest.test
def test_fleet_of_200_acks_every_push_within_a_second():
    # limits for the fleet: two connections per dataplane (its long poll and its heartbeat's)
    cp = cp_util.ControlPlane(extra_config="max_connections: 1024\nmax_long_polls: 512\nmax_dataplanes: 512\n", nofile=2048)
    cp_util.expect(cp.call("PUT", "/v1/config", cp_util.fleet()), 201)
    # push -> ACK: every dataplane's latency of 5 pushes pooled, p99 under 1 s; admin calls while
    # the fleet is connected: p99 under 250 ms between pushes, under 1 s overall. On a machine
    # busy with other work one more round of 5 pushes is allowed (as test_managed's latency test
    # allows); the figures of both are printed.
    rounds = []
    for _ in range(2):
        r = run_fleet(cp, "--bench", "--pushes", "5", "--interval", "0.5", "--steady", "2", "--admin-rate", "10")
        t = check_round(cp, r)
        rounds.append(t)
        if t["ack_p99_ms"] < 1000 and t["admin_quiet_p99_ms"] < 250 and t["admin_p99_ms"] < 1000:
            return
        print(f"round {len(rounds)} too slow: {t}", flush=True)
    raise AssertionError(f"push -> ACK p99 < 1000 ms and admin p99 < 250 ms (quiet) / 1000 ms: not met in 2 rounds: {rounds}")


@pwtest.test
def test_heartbeats_keep_their_connection():
    # with the default request_timeout, a heartbeat's keep-alive connection outlives the default
    # heartbeat_interval (5 s): 50 dataplanes beating for 12 s open one heartbeat connection each
    # (at a 5 s request_timeout the control plane closed them between heartbeats)
    n = 50
    cp = cp_util.ControlPlane()
    cp_util.expect(cp.call("PUT", "/v1/config", cp_util.fleet()), 201)
    argv = ["--url", f"http://127.0.0.1:{cp.port}", "-n", str(n), "--token", cp_util.DATAPLANE, "--admin-token", cp_util.ADMIN,
            "--pid", str(cp.proc.p.pid), "--quiet", "--bench", "--pushes", "1", "--interval", "0.5", "--steady", "12"]
    r = asyncio.run(fleet_sim.bench(fleet_sim.parse_args(argv)))
    assert r["ok"], r.get("failure")
    assert not r["errors"], r["errors"]
    assert r["connections_opened"]["heartbeat"] == n, r["connections_opened"]


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
