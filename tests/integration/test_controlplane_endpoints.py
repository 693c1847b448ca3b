"""How many of each service's endpoints each dataplane considers up (issue 11), as the control plane
shows it: heartbeat stats carry `endpoints` ({service: {up, total, panic}}); GET /v1/dataplanes and
/v1/dataplanes/{id} show the latest as `endpoints` (null when a dataplane sends none, malformed
entries left out); /metrics has pathway_control_endpoints_up, pathway_control_endpoints and
pathway_control_service_panic for dataplanes still calling; `pathwayctl status` names the services
whose endpoints are not all up. End to end with a real managed dataplane whose endpoint is drained.

Each test fails on a control plane and dataplane without endpoint health: no `endpoints` in GET
/v1/dataplanes, no such metrics, no ENDPOINTS column, no `endpoints` in heartbeats."""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cp_util  # noqa: E402
import dp_util  # noqa: E402
import pwtest  # noqa: E402
from cp_util import ADMIN, DATAPLANE, VIEWER, ControlPlane, expect  # noqa: E402
from pwtest import main, test  # noqa: E402


def ctl(cp, *args):
    """pathwayctl against cp with the admin token and no settings file: (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATHWAY_")}
    env.update({"PATHWAY_URL": f"http://127.0.0.1:{cp.port}", "PATHWAY_TOKEN": ADMIN, "NO_COLOR": "1",
                "XDG_CONFIG_HOME": tempfile.mkdtemp(prefix="pw-ctl-xdg-")})
    p = subprocess.run([pwtest.binary("pathwayctl"), *args], capture_output=True, text=True, env=env, timeout=30)
    return p.returncode, p.stdout, p.stderr


def table_rows(out):
    """{id: row} of the dataplane table of `pathwayctl status` or `dataplanes`, with the header row
    under "ID"; cells are found by the header's column offsets."""
    lines = out.split("\n\n", 1)[-1].splitlines()
    head = next(i for i, l in enumerate(lines) if l.startswith("ID "))
    cols = [m.start() for m in re.finditer(r"\S+(?: \S+)*", lines[head])]
    names = re.findall(r"\S+(?: \S+)*", lines[head])
    rows = {}
    for line in lines[head:]:
        cells = {n: line[a:b].strip() for n, a, b in zip(names, cols, cols[1:] + [len(line) + 1])}
        rows[cells["ID"]] = cells
    return rows


def scrape(cp):
    status, _, body = cp.request("GET", "/metrics", token=VIEWER)
    assert status == 200, status
    return body.decode()


def sample(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


@test
def test_heartbeat_endpoints_shown_in_api_metrics_and_status():
    cp = ControlPlane(heartbeat="2s")
    expect(cp.call("PUT", "/v1/config", cp_util.fleet(extra_service=True)), 201)
    reported = {"eth": {"up": 2, "total": 3, "panic": False}, "poly": {"up": 0, "total": 2, "panic": True},
                "base": {"up": 1, "total": 1, "panic": False}}
    # entries of another shape are the dataplane's garbage: left out, never an error
    garbage = {"bad id!": {"up": 1, "total": 1, "panic": False}, "s1": {"up": "2", "total": 3, "panic": False},
               "s2": {"up": 4, "total": 3, "panic": False}, "s3": {"up": 1, "total": 1}, "s4": 7, "s5": {"up": -1, "total": 1,
                                                                                                     "panic": True}}
    body = {"version": 1, "applied": True, "stats": {"requests": 3, "endpoints": {**reported, **garbage}}}
    s, _, rec = expect(cp.call("POST", "/v1/dataplanes/dp-1/status", body, token=DATAPLANE), 200)
    assert rec["endpoints"] == reported, rec
    expect(cp.call("POST", "/v1/dataplanes/dp-2/status", {"version": 1, "applied": True, "stats": {"requests": 1}},
                   token=DATAPLANE), 200)
    expect(cp.call("POST", "/v1/dataplanes/dp-3/status",
                   {"version": 1, "applied": True, "stats": {"endpoints": {"eth": {"up": 3, "total": 3, "panic": False}}}},
                   token=DATAPLANE), 200)

    for token in (ADMIN, VIEWER):
        _, _, b = expect(cp.call("GET", "/v1/dataplanes", token=token), 200)
        by_id = {d["id"]: d for d in b["dataplanes"]}
        assert by_id["dp-1"]["endpoints"] == reported, by_id["dp-1"]
        assert by_id["dp-2"]["endpoints"] is None, by_id["dp-2"]  # sends none (a dataplane before endpoint health)
        assert by_id["dp-3"]["endpoints"] == {"eth": {"up": 3, "total": 3, "panic": False}}
        _, _, one = expect(cp.call("GET", "/v1/dataplanes/dp-1", token=token), 200)
        assert one["endpoints"] == reported, one

    text = scrape(cp)
    dp_util.promtool_check(text)
    for name in ("pathway_control_endpoints_up", "pathway_control_endpoints", "pathway_control_service_panic"):
        assert re.search(rf"^# TYPE {name} gauge$", text, re.M) and re.search(rf"^# HELP {name} \S", text, re.M), name
    assert sample(text, "pathway_control_endpoints_up", dataplane="dp-1", service="eth") == 2
    assert sample(text, "pathway_control_endpoints", dataplane="dp-1", service="eth") == 3
    assert sample(text, "pathway_control_service_panic", dataplane="dp-1", service="eth") == 0
    assert sample(text, "pathway_control_endpoints_up", dataplane="dp-1", service="poly") == 0
    assert sample(text, "pathway_control_service_panic", dataplane="dp-1", service="poly") == 1
    assert sample(text, "pathway_control_endpoints_up", dataplane="dp-3", service="eth") == 3
    assert "dataplane=\"dp-2\"" not in text and "s2" not in text and "bad id" not in text, text

    # pathwayctl: the services not all up, PANIC where none is; "all up"; "-" when none reported
    rc, out, err = ctl(cp, "status")
    assert rc == 0, (rc, out, err)
    rows = table_rows(out)
    assert rows["ID"]["ENDPOINTS"] == "ENDPOINTS", rows
    assert rows["dp-1"]["ENDPOINTS"] == "eth 2/3 up, poly PANIC 0/2", rows["dp-1"]
    assert rows["dp-2"]["ENDPOINTS"] == "-" and rows["dp-3"]["ENDPOINTS"] == "all up", rows
    rc, out, err = ctl(cp, "dataplanes")
    assert rc == 0 and table_rows(out)["dp-1"]["ENDPOINTS"] == "eth 2/3 up, poly PANIC 0/2", (rc, out, err)
    rc, out, err = ctl(cp, "status", "--json")
    dps = {d["id"]: d for d in json.loads(out)["dataplanes"]}
    assert rc == 0 and dps["dp-1"]["endpoints"] == reported, out

    # the latest heartbeat is what counts
    body["stats"]["endpoints"] = {"eth": {"up": 3, "total": 3, "panic": False}}
    expect(cp.call("POST", "/v1/dataplanes/dp-1/status", body, token=DATAPLANE), 200)
    assert cp.call("GET", "/v1/dataplanes/dp-1")[2]["endpoints"] == {"eth": {"up": 3, "total": 3, "panic": False}}
    assert sample(scrape(cp), "pathway_control_endpoints_up", dataplane="dp-1", service="poly") is None

    # a dataplane no longer calling: its last figures stay in the API, not in the metrics (stale)
    time.sleep(2.3)
    assert cp.call("GET", "/v1/dataplanes/dp-1")[2]["state"] == "disconnected"
    assert cp.call("GET", "/v1/dataplanes/dp-1")[2]["endpoints"] == {"eth": {"up": 3, "total": 3, "panic": False}}
    text = scrape(cp)
    assert sample(text, "pathway_control_endpoints_up", dataplane="dp-1", service="eth") is None, text
    dp_util.promtool_check(text)
    assert cp.stop() == 0


@test
def test_real_dataplane_reports_a_drained_endpoint():
    _, up = dp_util.start_mock()
    u = f"http://127.0.0.1:{up}"
    fleet = {"log": {"level": "info"}, "defaults": {"health_check": {"interval": "0s"}},
             "services": [{"id": "eth", "endpoints": [{"url": u}, {"url": u + "/two"}]},
                          {"id": "poly", "endpoints": [{"url": u}]}]}
    d = tempfile.mkdtemp(prefix="pw-cp-endpoints-")
    cp = ControlPlane(seed=pwtest.write_file(d, "seed.json", json.dumps(fleet)))
    extra = (f"control_plane:\n  url: http://127.0.0.1:{cp.port}\n"
             f"  token_file: {os.path.join(cp.dir, 'dataplane.token')}\n  id: dp-1\n"
             f"  state_dir: {os.path.join(d, 'state')}\n  heartbeat_interval: 300ms\n")
    pw = dp_util.Pathway([("eth", [u], "")], extra=extra, threads=1, tmpdir=d)

    def endpoints_are(want):
        def check():
            _, _, b = cp.call("GET", "/v1/dataplanes/dp-1")
            return b if b and b["state"] == "synced" and b["endpoints"] == want else None
        return dp_util.wait_for(check, timeout=10, what=f"GET /v1/dataplanes/dp-1 endpoints {want}")

    all_up = {"eth": {"up": 2, "total": 2, "panic": False}, "poly": {"up": 1, "total": 1, "panic": False}}
    endpoints_are(all_up)
    rc, out, err = ctl(cp, "status")
    assert rc == 0 and table_rows(out)["dp-1"]["ENDPOINTS"] == "all up", (rc, out, err)

    second = urllib.parse.quote(f"127.0.0.1:{up}#2", safe="")
    st, _, body = dp_util.admin_post(pw.admin, f"/endpoints/eth/{second}/drain")
    assert st == 200 and body["state"] == "draining", body
    endpoints_are({**all_up, "eth": {"up": 1, "total": 2, "panic": False}})
    rc, out, err = ctl(cp, "status")
    assert rc == 0 and table_rows(out)["dp-1"]["ENDPOINTS"] == "eth 1/2 up", (rc, out, err)
    assert sample(scrape(cp), "pathway_control_endpoints_up", dataplane="dp-1", service="eth") == 1

    assert dp_util.admin_post(pw.admin, f"/endpoints/eth/{second}/undrain")[0] == 200
    endpoints_are(all_up)
    assert cp.stop() == 0


@test
def test_many_services_send_only_those_not_all_up():
    # 150 services with long ids would pass the heartbeat's budget for these figures (4 KiB, the
    # control plane taking 16 KiB of stats in all): the dataplane then sends only the services not
    # all up, and its reports keep being accepted
    _, up = dp_util.start_mock()
    u = f"http://127.0.0.1:{up}"
    ids = [f"svc-{i:03d}-" + "x" * 40 for i in range(150)]
    fleet = {"log": {"level": "info"},
             "services": [{"id": sid, "endpoints": [{"url": u}, {"url": u + "/two"}]} for sid in ids]}
    d = tempfile.mkdtemp(prefix="pw-cp-endpoints-")
    cp = ControlPlane(seed=pwtest.write_file(d, "seed.json", json.dumps(fleet)))
    extra = (f"control_plane:\n  url: http://127.0.0.1:{cp.port}\n"
             f"  token_file: {os.path.join(cp.dir, 'dataplane.token')}\n  id: dp-1\n"
             f"  state_dir: {os.path.join(d, 'state')}\n  heartbeat_interval: 300ms\n")
    pw = dp_util.Pathway([("eth", [u], "")], extra=extra, threads=1, tmpdir=d)

    def endpoints_are(want):
        def check():
            _, _, b = cp.call("GET", "/v1/dataplanes/dp-1")
            return b if b and b["state"] == "synced" and b["endpoints"] == want else None
        return dp_util.wait_for(check, timeout=10, what=f"GET /v1/dataplanes/dp-1 endpoints {want}")

    endpoints_are({})
    rc, out, err = ctl(cp, "status")
    assert rc == 0 and table_rows(out)["dp-1"]["ENDPOINTS"] == "all up", (rc, out, err)
    second = urllib.parse.quote(f"127.0.0.1:{up}#2", safe="")
    for sid in (ids[7], ids[99]):
        assert dp_util.admin_post(pw.admin, f"/endpoints/{sid}/{second}/drain")[0] == 200
    endpoints_are({ids[7]: {"up": 1, "total": 2, "panic": False}, ids[99]: {"up": 1, "total": 2, "panic": False}})
    rc, out, err = ctl(cp, "status")
    assert rc == 0 and table_rows(out)["dp-1"]["ENDPOINTS"] == f"{ids[7]} 1/2 up, {ids[99]} 1/2 up", (rc, out, err)
    assert cp.stop() == 0


if __name__ == "__main__":
    main()
