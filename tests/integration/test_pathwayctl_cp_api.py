"""pathwayctl against a real pathway-control for the calls added with drift detection: `tag delete`
(DELETE /v1/tags/{name}), `dataplanes forget` (DELETE /v1/dataplanes/{id}), and a `drifted`
dataplane in `status` and `--wait`. test_pathwayctl_requests.py checks the same commands' requests
against a scripted server."""

import json
import os
import subprocess
import tempfile
import time

import pwtest
from pwtest import test

ADMIN_TOKEN = "admin-token-0123456789abcdef"
DATAPLANE_TOKEN = "dataplane-token-0123456789abcdef"
FLEET = """\
log:
  level: info
services:
  - id: eth
    endpoints:
      - url: http://127.0.0.1:8545
"""


class ControlPlane:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pw-ctl-api-")
        self.port = pwtest.free_port()
        pwtest.write_file(self.dir, "admin.token", ADMIN_TOKEN + "\n")
        pwtest.write_file(self.dir, "dataplane.token", DATAPLANE_TOKEN + "\n")
        conf = pwtest.write_file(self.dir, "cp.yaml", f"listen: 127.0.0.1:{self.port}\ndatabase: cp.db\n"
                                 "heartbeat_timeout: 1s\ntokens:\n"
                                 "  - {name: ops, role: admin, file: admin.token}\n"
                                 "  - {name: fleet, role: dataplane, file: dataplane.token}\n")
        fleet = pwtest.write_file(self.dir, "fleet.yaml", FLEET)
        self.proc = pwtest.Proc([pwtest.binary("pathway-control"), "-c", conf, "--seed", fleet], name="pathway-control")
        pwtest.wait_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}"


def ctl(cp, *args):
    e = {k: v for k, v in os.environ.items() if not k.startswith("PATHWAY_")}
    e.update({"XDG_CONFIG_HOME": tempfile.mkdtemp(prefix="pw-ctl-xdg-"), "NO_COLOR": "1", "PATHWAY_URL": cp.url,
              "PATHWAY_TOKEN": ADMIN_TOKEN})
    p = subprocess.run([pwtest.binary("pathwayctl"), *args], capture_output=True, text=True, env=e, timeout=30)
    return p.returncode, p.stdout, p.stderr


def report(cp, dp_id, version, hash=None):
    body = {"version": version, "applied": True}
    if hash is not None:
        body["hash"] = hash
    st, _, data = pwtest.request(cp.port, "POST", f"/v1/dataplanes/{dp_id}/status", body=body,
                                 headers={"Authorization": f"Bearer {DATAPLANE_TOKEN}"})
    assert st == 200, (st, data)


def version_hash(cp, n):
    st, _, v = pwtest.request_json(cp.port, "GET", f"/v1/versions/{n}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert st == 200, st
    return v["hash"]


@test
def tag_delete():
    cp = ControlPlane()
    rc, out, err = ctl(cp, "tag", "stable", "1")
    assert rc == 0, (rc, err)
    rc, out, err = ctl(cp, "tag", "delete", "stable", "-m", "retired")
    assert rc == 0 and out == "deleted tag stable (it pointed at version 1)\n", (rc, out, err)
    assert ctl(cp, "tag")[1].startswith("no tags yet"), ctl(cp, "tag")
    rc, out, err = ctl(cp, "rollback", "stable")
    assert rc == 1 and 'no tag "stable" (there is none)' in err, (rc, err)
    rc, out, err = ctl(cp, "tag", "delete", "stable")
    assert rc == 1 and 'no tag "stable"' in err, (rc, err)
    rc, out, err = ctl(cp, "events")
    assert "retired" in out, out


@test
def dataplanes_forget():
    cp = ControlPlane()
    report(cp, "dp-old", 1)
    rc, out, err = ctl(cp, "dataplanes", "forget", "dp-old")
    assert rc == 1 and "409" in err, (rc, out, err)  # still connected
    time.sleep(1.3)  # heartbeat_timeout: 1s
    rc, out, err = ctl(cp, "dataplanes", "forget", "dp-old")
    assert rc == 0 and out.startswith("forgot dataplane dp-old"), (rc, out, err)
    rc, out, err = ctl(cp, "dataplanes")
    assert out.startswith("no dataplane has called"), out
    rc, out, err = ctl(cp, "dataplanes", "forget", "dp-olt")
    assert rc == 1 and 'no dataplane "dp-olt"' in err, (rc, err)


@test
def drifted_dataplane():
    cp = ControlPlane()
    served = "ab" * 32
    report(cp, "dp-a", 1, hash=served)
    rc, out, err = ctl(cp, "status")
    assert rc == 1 and "(0 synced, 1 drifted)" in out, (rc, out, err)
    row = [ln for ln in out.splitlines() if ln.startswith("dp-a")][0]
    assert f"drifted: serves hash {served[:12]}, version 1 has {version_hash(cp, 1)[:12]}" in row, row
    dp = json.loads(ctl(cp, "dataplanes", "--json")[1])["dataplanes"][0]
    assert dp["state"] == "drifted" and dp["reported_hash"] == served, dp

    # --wait: it ACKs version 2 but still serves another document: exit 1 with both hashes
    e = {**os.environ, "PATHWAY_URL": cp.url, "PATHWAY_TOKEN": ADMIN_TOKEN, "NO_COLOR": "1",
         "XDG_CONFIG_HOME": tempfile.mkdtemp(prefix="pw-ctl-xdg-")}
    proc = subprocess.Popen([pwtest.binary("pathwayctl"), "set", "log.level=warn", "--wait=10s"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e)
    deadline = time.time() + 10
    while time.time() < deadline:
        st, hdrs, _ = pwtest.request(cp.port, "GET", "/v1/config", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        if hdrs.get("etag") == '"2"':
            break
        time.sleep(0.05)
    report(cp, "dp-a", 2, hash=served)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1, (proc.returncode, out, err)
    assert f"dp-a: drifted: serves hash {served[:12]}, version 2 has {version_hash(cp, 2)[:12]}" in err, err

    # it serves version 2's document: synced, status 0
    report(cp, "dp-a", 2, hash=version_hash(cp, 2))
    rc, out, err = ctl(cp, "status")
    assert rc == 0 and "(1 synced)" in out, (rc, out, err)


if __name__ == "__main__":
    pwtest.main()
