"""Drift (issue 9): the control plane compares the document hash each heartbeat reports with the
hash of the version the dataplane ACKed; a mismatch is state "drifted" with both hashes in
GET /v1/dataplanes and pathway_control_dataplanes{state="drifted"}. A real managed dataplane
reports the hash of the same canonical fleet form the control plane stores."""

import json
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dp_util  # noqa: E402
import pwtest  # noqa: E402
from cp_util import DATAPLANE, VIEWER, ControlPlane, expect, fleet  # noqa: E402

OTHER = "ab" * 32


def report(cp, dp_id, version, **kw):
    body = {"version": version, "applied": True}
    body.update(kw)
    return expect(cp.call("POST", f"/v1/dataplanes/{dp_id}/status", body, token=DATAPLANE), 200)[2]


def drifted_gauge(cp):
    text = cp.request("GET", "/metrics")[2].decode()
    line = next(line for line in text.splitlines() if line.startswith('pathway_control_dataplanes{state="drifted"}'))
    return int(line.split()[1])


def listed(cp, dp_id, token=None):
    body = cp.call("GET", "/v1/dataplanes", **({"token": token} if token else {}))[2]
    return next(d for d in body["dataplanes"] if d["id"] == dp_id)


@pwtest.test
def test_heartbeat_hash_mismatch_is_drifted():
    cp = ControlPlane()
    v1 = expect(cp.call("PUT", "/v1/config", fleet("info")), 201)[2]
    b = report(cp, "dp-1", 1, hash=v1["hash"])
    assert b["state"] == "synced" and b["reported_hash"] == v1["hash"] and b["expected_hash"] == v1["hash"], b
    assert drifted_gauge(cp) == 0
    # what dataplanes send today: the hash inside the heartbeat's stats
    b = report(cp, "dp-1", 1, stats={"requests": 5, "hash": OTHER})
    assert b["state"] == "drifted", b
    for d in (listed(cp, "dp-1"), listed(cp, "dp-1", VIEWER), cp.call("GET", "/v1/dataplanes/dp-1")[2]):
        assert d["state"] == "drifted" and d["reported_hash"] == OTHER and d["expected_hash"] == v1["hash"], d
    assert drifted_gauge(cp) == 1
    # a heartbeat with the right hash (top-level `hash`) ends it
    b = report(cp, "dp-1", 1, hash=v1["hash"], stats={"requests": 6})
    assert b["state"] == "synced", b
    assert drifted_gauge(cp) == 0
    # a report without a hash changes nothing about it
    assert report(cp, "dp-1", 1)["state"] == "synced"
    # a malformed hash is refused, naming the key
    s, _, e = expect(cp.call("POST", "/v1/dataplanes/dp-1/status", {"version": 1, "applied": True, "hash": "xyz"},
                             token=DATAPLANE), 400)
    assert "hash" in e["error"], e
    assert cp.stop() == 0


@pwtest.test
def test_report_racing_an_apply_is_not_drift():
    cp = ControlPlane()
    v1 = expect(cp.call("PUT", "/v1/config", fleet("info")), 201)[2]
    report(cp, "dp-2", 1, hash=v1["hash"])
    v2 = expect(cp.call("PUT", "/v1/config", fleet("warn")), 201)[2]
    # handed version 2, it runs it before its ACK arrives: a heartbeat of version 1 with 2's hash
    expect(cp.call("GET", "/v1/dataplanes/dp-2/config?version=1", token=DATAPLANE), 200)
    b = report(cp, "dp-2", 1, hash=v2["hash"])
    assert b["state"] == "applying", b
    b = report(cp, "dp-2", 2, hash=v2["hash"])
    assert b["state"] == "synced" and b["expected_hash"] == v2["hash"], b
    # it ACKed 2 but serves 1's document: drifted
    b = report(cp, "dp-2", 2, hash=v1["hash"])
    assert b["state"] == "drifted" and b["expected_hash"] == v2["hash"] and b["reported_hash"] == v1["hash"], b
    assert cp.stop() == 0


@pwtest.test
def test_real_dataplane_reports_the_same_hash():
    mock, mport = dp_util.start_mock()
    directory = tempfile.mkdtemp(prefix="pw-drift-")
    doc = {"log": {"level": "info"}, "services": [{"id": "eth", "endpoints": [{"url": f"http://127.0.0.1:{mport}"}]}]}
    seed = pwtest.write_file(directory, "seed.json", json.dumps(doc))
    cp = ControlPlane(seed=seed)
    extra = (f"control_plane:\n  url: http://127.0.0.1:{cp.port}\n  token_file: {os.path.join(cp.dir, 'dataplane.token')}\n"
             f"  id: dp-real\n  state_dir: {os.path.join(directory, 'state')}\n  heartbeat_interval: 200ms\n")
    pw = dp_util.Pathway([("eth", [f"http://127.0.0.1:{mport}"], "")], extra=extra, threads=1,
                         tmpdir=tempfile.mkdtemp(prefix="pw-dp-", dir=directory))
    v1 = cp.call("GET", "/v1/versions/1")[2]

    def settled(version, hash_):
        d = cp.call("GET", "/v1/dataplanes/dp-real")[2]
        return d if d and d.get("applied_version") == version and d.get("reported_hash") == hash_ else None

    d = dp_util.wait_for(lambda: settled(1, v1["hash"]), 15, "dp-real to ACK version 1 and report its hash")
    assert d["state"] == "synced" and d["expected_hash"] == v1["hash"], d
    doc["log"]["level"] = "warn"
    v2 = expect(cp.call("PUT", "/v1/config", doc), 201)[2]
    d = dp_util.wait_for(lambda: settled(2, v2["hash"]), 15, "dp-real to ACK version 2 and report its hash")
    assert d["state"] == "synced", d
    # a local reload keeps the pushed fleet part: the dataplane still serves version 2, and says so
    pw.proc.send(signal.SIGHUP)
    time.sleep(1.0)
    served = pwtest.request_json(pw.admin, "GET", "/config")[2]["hash"]
    d = dp_util.wait_for(lambda: (lambda x: x if x["reported_hash"] == served else None)(cp.call("GET", "/v1/dataplanes/dp-real")[2]),
                         10, "a heartbeat after the reload")
    assert served == v2["hash"], (served, v2["hash"])
    assert d["state"] == "synced", d
    assert drifted_gauge(cp) == 0
    assert pw.proc.stop() == 0
    mock.stop()
    assert cp.stop() == 0


if __name__ == "__main__":
    pwtest.main()
