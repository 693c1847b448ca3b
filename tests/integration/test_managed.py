"""Managed dataplanes (issue 5): a real pathway-control, real pathway dataplanes and mock
upstreams on 127.0.0.1. Runtime push, ACK/NACK, no retry loop, last-good config from state_dir,
rollback under load, propagation time."""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cp_util  # noqa: E402
import dp_util  # noqa: E402
import pwtest  # noqa: E402
from pwtest import main, test  # noqa: E402


def fleet_doc(port, max_concurrent=100, conns=50, idle=25, level="info", bad_ca=None):
    """A fleet document relaying `eth` to the mock on `port`; the arguments make distinct ones."""
    doc = {
        "log": {"level": level},
        "limiter": {"max_concurrent": max_concurrent, "max_queue": 1000, "queue_timeout": "5s"},
        "defaults": {"pool": {"max_conns_per_host": conns, "max_idle_per_host": idle}},
        "services": [{"id": "eth", "endpoints": [{"url": f"http://127.0.0.1:{port}"}]}],
    }
    if bad_ca:
        # valid for the control plane, which cannot see the dataplane's files
        doc["services"].append({"id": "secure", "endpoints": [{"url": "https://127.0.0.1:9/", "tls": {"ca_file": bad_ca}}]})
    return doc


class Fleet:
    """One control plane seeded with version 1, `n` dataplanes managed by it, one mock upstream."""

    def __init__(self, n=2, mock_args=()):
        self.mock, self.mport = dp_util.start_mock(*mock_args)
        self.dir = tempfile.mkdtemp(prefix="pw-managed-")
        seed = pwtest.write_file(self.dir, "seed.json", json.dumps(fleet_doc(self.mport)))
        self.cp = cp_util.ControlPlane(seed=seed)
        self.dps = [self.start_dp(i) for i in range(n)]
        self.n = n
        for i in range(n):
            self.wait_applied(i, 1)

    def dp_extra(self, i):
        return (f"control_plane:\n"
                f"  url: http://127.0.0.1:{self.cp.port}\n"
                f"  token_file: {os.path.join(self.cp.dir, 'dataplane.token')}\n"
                f"  id: dp-{i}\n"
                f"  state_dir: {os.path.join(self.dir, f'state-{i}')}\n"
                f"  heartbeat_interval: 300ms\n")

    def start_dp(self, i, tmpdir=None):
        # the file's own services and limiter differ from the control plane's on purpose:
        # what runs must be what was pushed
        return dp_util.Pathway([("eth", [f"http://127.0.0.1:{self.mport}"], "")], extra=self.dp_extra(i) + "limiter:\n  max_concurrent: 99\n",
                               threads=1, tmpdir=tmpdir or tempfile.mkdtemp(prefix=f"pw-dp{i}-", dir=self.dir))

    def put(self, doc, message="test"):
        got = cp_util.expect(self.cp.call("PUT", "/v1/config", doc, headers={"Pathway-Message": message}), 201)
        return got[2]["version"]

    def dataplanes(self):
        status, _, body = self.cp.call("GET", "/v1/dataplanes")
        assert status == 200, body
        return {d["id"]: d for d in (body["dataplanes"] if isinstance(body, dict) else body)}

    def wait_applied(self, i, version, timeout=10.0):
        return dp_util.wait_for(lambda: self.dataplanes().get(f"dp-{i}", {}).get("applied_version") == version, timeout,
                                f"dp-{i} to apply version {version}")

    def running(self, i):
        """The document dataplane i runs (its admin /config)."""
        status, _, body = pwtest.request_json(self.dps[i].admin, "GET", "/config")
        assert status == 200, body
        return body["document"]


def burst(port, n, method="eth_blockNumber"):
    """n concurrent relays through one dataplane; returns their statuses."""
    statuses = []
    lock = threading.Lock()

    def one():
        try:
            status, _, _ = pwtest.request(port, "POST", "/v1/eth", {"jsonrpc": "2.0", "id": 1, "method": method, "params": []},
                                          timeout=30)
        except Exception as e:
            status = repr(e)
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


@test
def push_lowers_limiter_on_every_dataplane():
    f = Fleet(n=2, mock_args=("--latency", "300"))
    # before: the process-wide limit is 100, so a burst of 12 reaches the upstream all at once
    pwtest.request(f.mport, "POST", "/reset-stats")
    assert burst(f.dps[0].port, 12) == [200] * 12
    assert dp_util.mock_stats(f.mport)["peak_concurrent"] > 3
    start = time.time()
    v = f.put(fleet_doc(f.mport, max_concurrent=3))
    for i in range(2):
        f.wait_applied(i, v, timeout=1.0)
    took = time.time() - start
    assert took < 1.0, f"applied after {took:.3f}s"
    for i in range(2):
        assert f.running(i)["limiter"]["max_concurrent"] == 3
    # the upstream sees the new bound: at most 3 at once from each dataplane
    pwtest.request(f.mport, "POST", "/reset-stats")
    assert burst(f.dps[0].port, 12) == [200] * 12
    assert dp_util.mock_stats(f.mport)["peak_concurrent"] == 3
    pwtest.request(f.mport, "POST", "/reset-stats")
    both = []
    threads = [threading.Thread(target=lambda p=p: both.extend(burst(p, 8))) for p in (f.dps[0].port, f.dps[1].port)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert both == [200] * 16
    assert dp_util.mock_stats(f.mport)["peak_concurrent"] <= 6
    states = {d["id"]: d["state"] for d in f.dataplanes().values()}
    assert states == {"dp-0": "synced", "dp-1": "synced"}, states


@test
def twenty_pushes_and_a_rollback_under_load():
    f = Fleet(n=2, mock_args=("--latency", "1"))
    load = dp_util.RelayLoad([d.port for d in f.dps], clients=6)
    try:
        time.sleep(1.0)
        last = 1
        deadline = time.time() + 20
        for k in range(20):
            # two profiles: wide, and narrow (few connections, few idle, lower limit)
            doc = fleet_doc(f.mport, max_concurrent=64, conns=32, idle=16) if k % 2 == 0 else \
                fleet_doc(f.mport, max_concurrent=8, conns=2, idle=1, level="warn")
            last = f.put(doc, message=f"profile {k % 2}")
            time.sleep(max(0.0, (deadline - time.time()) / (20 - k)) if k < 19 else 0.5)
        for i in range(2):
            f.wait_applied(i, last)
        got = cp_util.expect(f.cp.call("POST", "/v1/rollback", {"to": 1, "message": "back to the seed"}), 201)
        rb = got[2]["version"]
        assert rb == last + 1
        for i in range(2):
            f.wait_applied(i, rb)
        time.sleep(0.5)
    finally:
        ok, failures = load.finish().totals()
    assert not failures, f"{len(failures)} failed requests, first: {failures[:3]}"
    assert ok > 500, ok
    for i in range(2):
        running = f.running(i)
        assert running["limiter"]["max_concurrent"] == 100
        assert running["defaults"]["pool"]["max_conns_per_host"] == 50
    dps = f.dataplanes()
    assert all(d["applied_version"] == rb and d["state"] == "synced" for d in dps.values()), dps


@test
def unusable_version_is_nacked_once_and_changes_nothing():
    f = Fleet(n=1)
    before = f.running(0)
    load = dp_util.RelayLoad([f.dps[0].port], clients=2)
    try:
        bad = f.put(fleet_doc(f.mport, max_concurrent=5, bad_ca="/nonexistent/ca.pem"))
        d = dp_util.wait_for(lambda: f.dataplanes()["dp-0"] if f.dataplanes()["dp-0"].get("rejected_version") == bad else None,
                             5.0, "the NACK")
        assert d["state"] == "rejected", d
        assert "ca_file" in d["error"] and "/nonexistent/ca.pem" in d["error"], d["error"]
        assert d["applied_version"] == 1
        # nothing changed on the dataplane
        assert f.running(0) == before
        # no retry loop: one NACK event, and it stays one
        time.sleep(2.0)
        status, _, ev = f.cp.call("GET", "/v1/events?limit=100")
        nacks = [e for e in ev["events"] if e["action"] == "nack" and e["version"] == bad]
        assert len(nacks) == 1, nacks
        # the next good version applies normally
        good = f.put(fleet_doc(f.mport, max_concurrent=6))
        f.wait_applied(0, good)
        assert f.running(0)["limiter"]["max_concurrent"] == 6
        assert f.dataplanes()["dp-0"]["state"] == "synced"
    finally:
        ok, failures = load.finish().totals()
    assert not failures, failures[:3]
    assert ok > 0


@test
def restart_without_control_plane_serves_last_version_then_resyncs():
    f = Fleet(n=1)
    v = f.put(fleet_doc(f.mport, max_concurrent=7))
    f.wait_applied(0, v)
    f.cp.stop()
    # restarted while the control plane is down: it serves what it last accepted, not its file
    dp_dir = f.dps[0].dir
    f.dps[0].proc.stop()
    f.dps[0] = f.start_dp(0, tmpdir=dp_dir)
    assert f.running(0)["limiter"]["max_concurrent"] == 7
    assert f.dps[0].stats()["version"] == v  # ready: it runs a fleet config (from state_dir)
    # a reload keeps the restored fleet part too (the file's own limiter says 99)
    st, _, body = f.dps[0].reload()
    assert st == 200 and body["changed"] is False and body["version"] == v, body
    assert f.running(0)["limiter"]["max_concurrent"] == 7
    status, _, body = f.dps[0].rpc("eth")
    assert status == 200 and "result" in body, body
    # it keeps serving while it retries
    time.sleep(1.0)
    assert f.dps[0].rpc("eth")[0] == 200
    # the control plane comes back: the dataplane reconnects and takes the next version
    f.cp.start()
    v2 = f.put(fleet_doc(f.mport, max_concurrent=9))
    f.wait_applied(0, v2, timeout=15.0)
    assert f.running(0)["limiter"]["max_concurrent"] == 9


@test
def reload_keeps_the_pushed_fleet_part():
    """SIGHUP and POST /reload re-read only the node-local part of the file: the fleet part stays
    the one the control plane pushed (the file's own limiter says 99, the push says 7)."""
    f = Fleet(n=1)
    dp = f.dps[0]
    v = f.put(fleet_doc(f.mport, max_concurrent=7, conns=11))
    f.wait_applied(0, v)

    def serves_pushed():
        st = dp.stats()
        assert st["version"] == v, st
        assert st["limiter"]["max_concurrent"] == 7, st["limiter"]
        assert st["services"][0]["endpoints"][0]["max_conns_per_host"] == 11, st["services"]
        assert f.running(0)["limiter"]["max_concurrent"] == 7
        assert f"pathway_config_version {v}\n" in dp.metrics()
        assert dp.rpc("eth")[0] == 200

    serves_pushed()
    gen = dp.stats()["generation"]
    dp_util.send_signal(dp.proc, signal.SIGHUP)
    dp_util.wait_for(lambda: "nothing changed" in dp.proc.output(), what="SIGHUP handled")
    serves_pushed()
    st, _, body = dp.reload()
    assert st == 200 and body["changed"] is False and body["version"] == v and body["generation"] == gen, body
    serves_pushed()
    # a node-local change in the file is taken (here a restart-only one, reported as such)
    dp.threads = 2
    dp.write()
    st, _, body = dp.reload()
    assert st == 200 and body["changed"] is True and body["restart_required"] == ["threads"], body
    assert body["version"] == v and body["generation"] == gen + 1, body
    serves_pushed()
    assert f.running(0)["threads"] == 2
    # the control plane still sees the dataplane on the version it runs
    time.sleep(1.0)  # a few heartbeats
    d = f.dataplanes()["dp-0"]
    assert d["applied_version"] == v and d["state"] == "synced", d


@test
def ready_only_with_a_fleet_config_and_unreachable_is_visible():
    """A managed dataplane whose control plane is down and whose state_dir is empty serves its file
    but is not ready; the outage shows in /stats, /metrics and one log line (not one per retry)."""
    f = Fleet(n=0)
    f.cp.stop()
    dp = dp_util.Pathway([("eth", [f"http://127.0.0.1:{f.mport}"], "")], extra=f.dp_extra(0), threads=1, wait=False,
                         tmpdir=tempfile.mkdtemp(prefix="pw-dp0-", dir=f.dir))
    pwtest.wait_port(dp.admin)
    dp_util.wait_for(lambda: dp.stats()["control_plane"]["failures"] >= 4, timeout=20.0, what="several failed calls")
    assert pwtest.request(dp.admin, "GET", "/ready")[0] == 503
    assert pwtest.request(dp.admin, "GET", "/healthz")[0] == 200
    cp = dp.stats()["control_plane"]
    assert cp["connected"] is False and cp["last_error"], cp
    assert "pathway_control_plane_connected 0" in dp.metrics()
    assert dp.proc.output().count("unreachable") == 1, dp.proc.output()
    assert dp.stats()["version"] == 0
    # the control plane comes back with version 1: applied, ready, connected
    f.cp.start()
    dp.wait_ready(timeout=20.0)
    assert dp.stats()["version"] == 1
    assert dp.stats()["control_plane"]["last_error"] is None
    assert "pathway_control_plane_connected 1" in dp.metrics()


@test
def unusable_control_plane_section_stops_the_start():
    f = Fleet(n=0)
    d = tempfile.mkdtemp(prefix="pw-dp-bad-", dir=f.dir)
    cases = {
        "token": f.dp_extra(0).replace(os.path.join(f.cp.dir, "dataplane.token"), os.path.join(d, "missing.token")),
        "state_dir": f.dp_extra(0).replace(os.path.join(f.dir, "state-0"), os.path.join(pwtest.write_file(d, "a-file", "x"), "s")),
    }
    for what, extra in cases.items():
        path = pwtest.write_file(d, f"{what}.yaml", dp_util.config_text([("eth", [f"http://127.0.0.1:{f.mport}"], "")],
                                                                         pwtest.free_port(), pwtest.free_port(), extra))
        r = subprocess.run([pwtest.binary("pathway"), "-c", path], capture_output=True, timeout=20)
        assert r.returncode != 0, (what, r)
        err = r.stderr.decode()
        assert f"control_plane.{what if what == 'state_dir' else 'token_file'}" in err, (what, err)


def parse_time(t):
    """The control plane's "2026-11-26T21:37:14.238Z" as Unix seconds."""
    import calendar
    base, ms = t.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + int(ms) / 1000.0


@test
def propagation_time_over_50_pushes():
    f = Fleet(n=2)
    versions = []
    for k in range(50):
        v = f.put(fleet_doc(f.mport, max_concurrent=200 + k))
        versions.append(v)
        deadline = time.time() + 5.0
        while not all(d["applied_version"] == v for d in f.dataplanes().values()):
            assert time.time() < deadline, f"version {v} not applied by both within 5s"
            time.sleep(0.002)
    # measured by the control plane itself: version stored -> the last of the two ACK events
    status, _, body = f.cp.call("GET", "/v1/versions?limit=100")
    created = {v["version"]: parse_time(v["created_at"]) for v in body["versions"]}
    status, _, ev = f.cp.call("GET", "/v1/events?limit=500")
    acked = {}
    for e in ev["events"]:
        if e["action"] == "ack" and e["version"] in versions:
            acked.setdefault(e["version"], []).append(parse_time(e["time"]))
    times = sorted((max(acked[v]) - created[v]) * 1000 for v in versions)
    assert all(len(acked[v]) == 2 for v in versions), acked
    p50 = statistics.median(times)
    p99 = times[int(0.99 * (len(times) - 1))]
    print(f"propagation, version stored -> last ACK of 2 dataplanes, 50 pushes: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {times[-1]:.1f} ms (control plane timestamps, 1 ms resolution)", flush=True)
    out = os.environ.get("PW_PROPAGATION_OUT")
    if out:
        with open(out, "w") as fp:
            json.dump({"p50_ms": p50, "p99_ms": p99, "max_ms": times[-1], "pushes": 50, "dataplanes": 2}, fp)
    # the target is p99 < 100 ms; a sanitizer build on a shared 2-core machine gets slack
    assert p99 < 1000, times


if __name__ == "__main__":
    main()
