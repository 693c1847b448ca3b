"""pathwayctl against a real pathway-control on 127.0.0.1: apply, set, diff, rollback, tags, the 412
path, validation errors, auth failures and an unreachable server, each checked by exit code and by
what the user reads."""

import json
import os
import re
import subprocess
import tempfile
import threading
import time

import pwtest
from pwtest import test

ADMIN_TOKEN = "admin-token-0123456789abcdef"
VIEWER_TOKEN = "viewer-token-0123456789abcdef"
DATAPLANE_TOKEN = "dataplane-token-0123456789abcdef"

FLEET = """\
log:
  level: info
limiter:
  max_concurrent: 100
services:
  - id: eth
    endpoints:
      - url: http://127.0.0.1:8545
  - id: poly
    endpoints:
      - url: http://127.0.0.1:8547
    pool:
      max_conns_per_host: 20
"""


class ControlPlane:
    """A pathway-control in a temporary directory, seeded with FLEET (or `fleet`) as version 1."""

    def __init__(self, seed=True, fleet=FLEET, extra=""):
        self.dir = tempfile.mkdtemp(prefix="pw-ctl-")
        self.port = pwtest.free_port()
        pwtest.write_file(self.dir, "admin.token", ADMIN_TOKEN + "\n")
        pwtest.write_file(self.dir, "viewer.token", VIEWER_TOKEN + "\n")
        pwtest.write_file(self.dir, "dataplane.token", DATAPLANE_TOKEN + "\n")
        conf = pwtest.write_file(
            self.dir,
            "cp.yaml",
            f"listen: 127.0.0.1:{self.port}\ndatabase: cp.db\ntokens:\n"
            "  - {name: ops, role: admin, file: admin.token}\n"
            "  - {name: grafana, role: viewer, file: viewer.token}\n"
            "  - {name: fleet, role: dataplane, file: dataplane.token}\n" + extra,
        )
        self.fleet = pwtest.write_file(self.dir, "fleet.yaml", fleet)
        args = [pwtest.binary("pathway-control"), "-c", conf]
        if seed:
            args += ["--seed", self.fleet]
        self.proc = pwtest.Proc(args, name="pathway-control")
        pwtest.wait_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}"


def ctl(cp, *args, token=ADMIN_TOKEN, env=None, stdin=None):
    """Runs pathwayctl with the control plane in PATHWAY_URL / PATHWAY_TOKEN and no settings file.
    Returns (exit code, stdout, stderr)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("PATHWAY_")}
    e["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="pw-ctl-xdg-")  # no settings file of the user's
    e["NO_COLOR"] = "1"
    if cp is not None:
        e["PATHWAY_URL"] = cp.url
    if token is not None:
        e["PATHWAY_TOKEN"] = token
    if env:
        e.update(env)
    p = subprocess.run([pwtest.binary("pathwayctl"), *args], capture_output=True, text=True, env=e, timeout=30, input=stdin)
    return p.returncode, p.stdout, p.stderr


def ok(cp, *args, **kw):
    rc, out, err = ctl(cp, *args, **kw)
    assert rc == 0, f"pathwayctl {' '.join(args)}: exit {rc}\nstdout:\n{out}\nstderr:\n{err}"
    return out


def active_document(cp):
    status, hdrs, doc = pwtest.request_json(cp.port, "GET", "/v1/config", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 200, status
    return int(hdrs["etag"].strip('"')), doc


@test
def status_versions_show():
    cp = ControlPlane()
    out = ok(cp, "status")
    assert f"control plane  {cp.url}" in out, out
    assert "version 1 (apply by seed" in out, out
    assert "dataplanes     0" in out, out

    out = ok(cp, "versions")
    lines = out.splitlines()
    assert lines[0].split() == ["VERSION", "CREATED", "AUTHOR", "KIND", "FROM", "HASH", "MESSAGE"], out
    assert lines[1].split()[:4] == ["*1", lines[1].split()[1], "seed", "apply"], out

    v = json.loads(ok(cp, "versions", "--json"))
    assert v["active_version"] == 1 and v["versions"][0]["version"] == 1, v

    # show --yaml is a document apply takes back unchanged
    yaml = ok(cp, "show", "1", "--yaml")
    assert yaml.startswith("# pathway fleet document, version 1"), yaml
    assert "max_conns_per_host: 20" in yaml, yaml
    path = pwtest.write_file(cp.dir, "roundtrip.yaml", yaml)
    out = ok(cp, "apply", path, "-m", "same again")
    assert "no change: active version 1 already has this document" in out, out

    shown = json.loads(ok(cp, "show", "--json"))
    assert shown["version"] == 1 and shown["document"]["limiter"]["max_concurrent"] == 100, shown
    out = ok(cp, "show", "active")
    assert out.startswith("version 1 (apply by seed"), out
    assert "services:" in out, out


@test
def set_by_service_id():
    cp = ControlPlane()
    out = ok(cp, "set", "limiter.max_concurrent=200", "services.eth.pool.max_conns_per_host=30", "-m", "more room")
    assert 'created version 2 (patch of 1 by ops' in out and '"more room"' in out, out
    assert "~ limiter.max_concurrent: 100 -> 200" in out, out
    # eth inherited max_conns_per_host from defaults (built in: 50); the diff says so
    assert "~ services.eth.pool.max_conns_per_host: 50 -> 30 (was inherited from defaults)" in out, out
    version, doc = active_document(cp)
    assert version == 2
    assert doc["limiter"]["max_concurrent"] == 200
    eth = [s for s in doc["services"] if s["id"] == "eth"][0]
    poly = [s for s in doc["services"] if s["id"] == "poly"][0]
    assert eth["pool"]["max_conns_per_host"] == 30, eth
    assert poly["pool"]["max_conns_per_host"] == 20, poly  # the other service is untouched

    # add a service (--create), remove one, reset a key to its default; strings stay strings
    out = ok(cp, "set", "--create", 'services.bsc.endpoints=[{"url":"http://127.0.0.1:8600"}]', "services.poly=null",
             "limiter.max_concurrent=null", "log.level=debug", "-m", "swap poly for bsc")
    assert "created version 3" in out, out
    assert "- services.poly:" in out and "+ services.bsc:" in out, out
    _, doc = active_document(cp)
    assert [s["id"] for s in doc["services"]] == ["eth", "bsc"], doc
    assert doc["limiter"]["max_concurrent"] == 100, doc  # back to the default
    assert doc["log"]["level"] == "debug"

    # nothing to change
    out = ok(cp, "set", "log.level=debug")
    assert "no change" in out, out

    # --dry-run sends nothing
    out = ok(cp, "set", "log.level=warn", "--dry-run")
    assert '"level": "warn"' in out and "~ log.level" in out, out
    assert active_document(cp)[0] == 3

    # a path that names no item is rejected before sending; bad syntax is a usage error
    rc, out, err = ctl(cp, "set", "services.nope=null")
    assert rc == 1 and 'no service "nope"' in err, (rc, err)
    rc, out, err = ctl(cp, "set", "limiter..max=1")
    assert rc == 2 and "empty segment" in err, (rc, err)
    rc, out, err = ctl(cp, "set", "limiter.max_concurrent")
    assert rc == 2 and "expected KEY=VALUE" in err, (rc, err)


@test
def validation_errors():
    cp = ControlPlane()
    bad = pwtest.write_file(cp.dir, "bad.yaml", FLEET.replace("max_conns_per_host: 20", "max_conns_per_host: 0")
                            + "limits:\n  bogus: 1\n")
    rc, out, err = ctl(cp, "validate", bad)
    assert rc == 1, (rc, out, err)
    assert f"{bad}: services[1].pool.max_conns_per_host:" in err, err
    assert f"{bad}: limits.bogus:" in err, err
    rc, out, err = ctl(cp, "validate", bad, "--json")
    assert rc == 1 and len(json.loads(out)["errors"]) == 2, (rc, out)

    rc, out, err = ctl(cp, "apply", bad, "-m", "broken")
    assert rc == 1 and "services[1].pool.max_conns_per_host" in err, (rc, err)
    assert active_document(cp)[0] == 1  # nothing stored

    # `set` names services by id: so do its errors (the server's services[0] is eth)
    rc, out, err = ctl(cp, "set", "services.eth.pool.max_conns_per_host=0")
    assert rc == 1 and "  services.eth.pool.max_conns_per_host: must be between" in err, (rc, err)
    assert "services[0]" not in err, err
    rc, out, err = ctl(cp, "set", "services.poly.endpoints.0.url=ftp://x")
    assert rc == 1 and "  services.poly.endpoints.0.url: " in err, (rc, err)
    rc, out, err = ctl(cp, "set", "log.level=loud")
    assert rc == 1 and "log.level" in err, (rc, err)

    # node-local keys do not belong in the control plane's document
    local = pwtest.write_file(cp.dir, "local.yaml", "threads: 2\n" + FLEET)
    rc, out, err = ctl(cp, "validate", local)
    assert rc == 1 and "threads" in err, (rc, err)

    good = ok(cp, "validate", cp.fleet)
    assert "valid" in good and "identical to the active version" in good, good


@test
def apply_diff_rollback_tag():
    cp = ControlPlane()
    changed = pwtest.write_file(cp.dir, "changed.yaml", FLEET.replace("max_concurrent: 100", "max_concurrent: 150")
                                .replace("level: info", "level: warn"))
    out = ok(cp, "apply", changed, "-m", "tune")
    assert "created version 2 (apply by ops" in out, out
    assert "~ limiter.max_concurrent: 100 -> 150" in out and '~ log.level: "info" -> "warn"' in out, out

    ok(cp, "tag", "stable", "1", "-m", "known good")
    out = ok(cp, "tag", "stable")
    assert out.startswith("tag stable -> version 1"), out
    assert json.loads(ok(cp, "tag", "stable", "--json"))["version"] == 1
    out = ok(cp, "tag")
    assert out.splitlines()[0].split() == ["TAG", "VERSION", "SET", "AT", "BY", "MESSAGE"], out
    assert out.splitlines()[1].split()[:2] == ["stable", "1"], out
    rc, out, err = ctl(cp, "tag", "stable", "-m", "no version given")
    assert rc == 2, (rc, err)
    rc, out, err = ctl(cp, "tag", "stable", "99")
    assert rc == 1 and "version 99 does not exist" in err, (rc, err)

    out = ok(cp, "diff", "1", "2")
    lines = out.splitlines()
    assert lines[0].startswith("--- version 1") and lines[1].startswith("+++ version 2"), out
    assert lines[2:] == ["~ limiter.max_concurrent: 100 -> 150", '~ log.level: "info" -> "warn"'], out
    # tags and `active` name versions too; --json is the API's RFC 6902 patch
    assert ok(cp, "diff", "stable", "active") == out
    d = json.loads(ok(cp, "diff", "1", "2", "--json"))
    assert d["from"] == 1 and d["to"] == 2
    assert {"op": "replace", "path": "/limiter/max_concurrent", "value": 150} in d["patch"], d
    out = ok(cp, "diff", "2", "2")
    assert "(no changes)" in out, out

    # colors only when asked (or on a terminal)
    out = ok(cp, "diff", "1", "2", "--color=always")
    assert "\033[33m~ limiter.max_concurrent" in out, repr(out)

    out = ok(cp, "rollback", "stable", "-m", "back to stable")
    assert "created version 3 (rollback to 1 by ops" in out, out
    assert "~ limiter.max_concurrent: 150 -> 100" in out, out
    version, doc = active_document(cp)
    assert version == 3 and doc["limiter"]["max_concurrent"] == 100
    out = ok(cp, "rollback", "2")
    assert "created version 4 (rollback to 2" in out, out

    rc, out, err = ctl(cp, "rollback", "99")
    assert rc == 1 and "version 99 does not exist" in err, (rc, err)
    rc, out, err = ctl(cp, "rollback", "nosuchtag")
    assert rc == 1 and "nosuchtag" in err, (rc, err)
    rc, out, err = ctl(cp, "show", "42")
    assert rc == 1, (rc, err)

    events = ok(cp, "events")
    assert events.splitlines()[0].split() == ["ID", "TIME", "ACTOR", "ACTION", "VERSION", "MESSAGE"], events
    assert "rollback" in events and "tag" in events and "stable: known good" in events, events
    ev = json.loads(ok(cp, "events", "--json", "-n", "2"))
    assert len(ev["events"]) == 2, ev


@test
def precondition_failed_412():
    cp = ControlPlane()
    ok(cp, "set", "log.level=warn")  # version 2
    # the operator reviewed version 1; version 2 is active now: refused, nothing stored
    rc, out, err = ctl(cp, "set", "limiter.max_concurrent=300", "--if-match", "1")
    assert rc == 1, (rc, out, err)
    assert "412" in err and "it is now 2" in err, err
    rc, out, err = ctl(cp, "apply", cp.fleet, "--if-match", "1")
    assert rc == 1 and "412" in err, (rc, err)
    rc, out, err = ctl(cp, "rollback", "1", "--if-match", "1")
    assert rc == 1 and "412" in err, (rc, err)
    assert active_document(cp)[0] == 2
    # the version it names is the active one: stored
    out = ok(cp, "apply", cp.fleet, "--if-match", "2", "-m", "reviewed")
    assert "created version 3" in out, out
    # --force sends no If-Match at all
    out = ok(cp, "set", "log.level=error", "-m", "forced")
    assert "created version 4" in out
    out = ok(cp, "apply", cp.fleet, "--force")
    assert "created version 5" in out, out


@test
def empty_store_and_dataplanes():
    cp = ControlPlane(seed=False)
    out = ok(cp, "status")
    assert "none (no version stored yet)" in out, out
    assert ok(cp, "versions").strip() == "no version stored yet"
    assert "no dataplane" in ok(cp, "dataplanes")
    # the first apply expects an empty store (If-Match "0")
    out = ok(cp, "apply", cp.fleet, "-m", "first")
    assert "created version 1 (apply by ops" in out, out
    # a dataplane that reported shows up in the table
    st, _, _ = pwtest.request(cp.port, "POST", "/v1/dataplanes/dp-1/status",
                              body={"version": 1, "applied": True, "labels": {"zone": "a"}},
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert st in (200, 204), st
    out = ok(cp, "dataplanes")
    row = out.splitlines()[1].split()
    assert row[0] == "dp-1" and row[2] == "1" and "zone=a" in row, out
    assert json.loads(ok(cp, "dataplanes", "--json"))["dataplanes"][0]["id"] == "dp-1"


def wait_dataplane(cp, state, version, timeout=15.0):
    """Polls `pathwayctl dataplanes --json` until dp-1 is in `state` having applied `version`."""
    deadline = time.time() + timeout
    dp = None
    while time.time() < deadline:
        dps = json.loads(ok(cp, "dataplanes", "--json"))["dataplanes"]
        dp = dps[0] if dps else None
        if dp is not None and dp["state"] == state and dp["applied_version"] == version:
            return dp
        time.sleep(0.1)
    raise AssertionError(f"dp-1 not {state} at version {version} after {timeout}s: {dp}")


def start_dataplane(cp, dp_id="dp-1"):
    """A real `pathway` managed by cp as dp_id."""
    conf = pwtest.write_file(cp.dir, f"{dp_id}.yaml", f"""\
listen:
  - address: 127.0.0.1:{pwtest.free_port()}
admin:
  address: 127.0.0.1:{pwtest.free_port()}
threads: 1
control_plane:
  url: {cp.url}
  token_file: {cp.dir}/dataplane.token
  id: {dp_id}
  state_dir: {cp.dir}
""")
    return pwtest.Proc([pwtest.binary("pathway"), "-c", conf], name="pathway")


def report(cp, dp_id, version, applied=True, error=None):
    """A status report as a dataplane sends it (for dataplanes that exist only in the test)."""
    body = {"version": version, "applied": applied}
    if error is not None:
        body["error"] = error
    st, _, _ = pwtest.request(cp.port, "POST", f"/v1/dataplanes/{dp_id}/status", body=body,
                              headers={"Authorization": f"Bearer {DATAPLANE_TOKEN}"})
    assert st == 200, st


@test
def managed_dataplane_states():
    cp = ControlPlane()
    start_dataplane(cp)
    wait_dataplane(cp, "synced", 1)
    out = ok(cp, "status")
    assert "dataplanes     1 (1 synced)" in out, out
    table = out.split("\n\n", 1)[1].splitlines()
    assert table[0].split() == ["ID", "STATE", "APPLIED", "LAST", "SEEN", "LABELS", "ENDPOINTS", "ERROR"], out
    assert table[1].split()[:3] == ["dp-1", "synced", "1"], out

    # a CA file the dataplane cannot read: the control plane stores it, the dataplane NACKs
    ok(cp, "set", 'services.eth.endpoints.0={"url":"https://127.0.0.1:8545","tls":{"ca_file":"/nonexistent/ca.pem"}}')
    dp = wait_dataplane(cp, "rejected", 1)
    out = ok(cp, "dataplanes")
    row = out.splitlines()[1]
    assert row.split()[:3] == ["dp-1", "rejected", "1"] and "/nonexistent/ca.pem" in row, out
    # a rejected dataplane: status says so, and exits 1
    rc, out, err = ctl(cp, "status")
    assert rc == 1 and "dataplanes     1 (0 synced, 1 rejected)" in out, (rc, out, err)
    assert "nack" in ok(cp, "events")

    out = ok(cp, "rollback", "1", "-m", "CA not deployed")
    assert "created version 3 (rollback to 1" in out, out
    wait_dataplane(cp, "synced", 3)


@test
def auth_and_unreachable():
    cp = ControlPlane()
    rc, out, err = ctl(cp, "status", token="wrong-token-0123456789")
    assert rc == 3 and "authentication failed (401)" in err, (rc, err)
    rc, out, err = ctl(cp, "versions", token=None)
    assert rc == 3 and "401" in err, (rc, err)
    # a viewer reads but does not write
    ok(cp, "versions", token=VIEWER_TOKEN)
    rc, out, err = ctl(cp, "set", "log.level=warn", token=VIEWER_TOKEN)
    assert rc == 3 and "403" in err, (rc, err)

    # nothing listens there
    dead = pwtest.free_port()
    rc, out, err = ctl(None, "--url", f"http://127.0.0.1:{dead}", "status")
    assert rc == 3 and "cannot reach the control plane" in err, (rc, err)
    rc, out, err = ctl(None, "apply", cp.fleet, env={"PATHWAY_URL": f"http://127.0.0.1:{dead}"})
    assert rc == 3, (rc, err)
    # a server that stops answering: the timeout ends the wait
    cp.proc.send(19)  # SIGSTOP
    try:
        rc, out, err = ctl(cp, "--timeout", "300ms", "status")
        assert rc == 3, (rc, err)
    finally:
        cp.proc.send(18)  # SIGCONT


@test
def settings_file_and_usage():
    cp = ControlPlane()
    xdg = tempfile.mkdtemp(prefix="pw-ctl-xdg-")
    os.makedirs(os.path.join(xdg, "pathway"))
    pwtest.write_file(os.path.join(xdg, "pathway"), "admin.token", ADMIN_TOKEN + "\n")
    pwtest.write_file(os.path.join(xdg, "pathway"), "pathwayctl.yaml", f"url: {cp.url}\ntoken_file: admin.token\n")
    rc, out, err = ctl(None, "versions", token=None, env={"XDG_CONFIG_HOME": xdg})
    assert rc == 0 and "*1" in out, (rc, out, err)
    # the environment overrides the file
    rc, out, err = ctl(None, "versions", token="wrong-token-0123456789", env={"XDG_CONFIG_HOME": xdg})
    assert rc == 3, (rc, err)

    rc, out, err = ctl(cp, "frobnicate")
    assert rc == 2 and "unknown command" in err, (rc, err)
    rc, out, err = ctl(cp, "apply")
    assert rc == 2 and "usage: pathwayctl apply FILE" in err, (rc, err)
    rc, out, err = ctl(cp, "apply", "/nonexistent.yaml")
    assert rc == 2 and "/nonexistent.yaml" in err, (rc, err)
    rc, out, err = ctl(cp, "versions", "--yaml")
    assert rc == 2 and "does not apply" in err, (rc, err)
    for cmd in ("status", "versions", "show", "diff", "apply", "set", "rollback", "tag", "validate", "dataplanes", "events"):
        out = ok(cp, cmd, "--help")
        assert out.startswith(f"usage: pathwayctl {cmd}"), out
        assert "Exit: 0 ok, 1 rejected" in out, out
    out = ok(cp, "--help")
    assert "set KEY=VALUE..." in out, out


@test
def apply_of_a_shown_file_is_checked_against_its_version():
    cp = ControlPlane()
    shown = ok(cp, "show", "--yaml")
    assert shown.startswith("# pathway fleet document, version 1 "), shown
    path = pwtest.write_file(cp.dir, "edited.yaml", shown.replace("level: info", "level: warn"))
    ok(cp, "set", "limiter.max_concurrent=300", "-m", "meanwhile")  # version 2, after the show
    # the file was shown from version 1: applying it would overwrite version 2's change
    rc, out, err = ctl(cp, "apply", path, "-m", "my edit")
    assert rc == 1 and "412" in err and "it is now 2" in err, (rc, out, err)
    assert 'If-Match: "1" (the version ' in out, out
    version, doc = active_document(cp)
    assert version == 2 and doc["limiter"]["max_concurrent"] == 300 and doc["log"]["level"] == "info", doc
    # --if-match and --force still decide when given
    out = ok(cp, "apply", path, "--if-match", "2", "-m", "reviewed against 2")
    assert "created version 3" in out, out
    # a file shown from the active version applies
    shown = ok(cp, "show", "--yaml")
    path = pwtest.write_file(cp.dir, "edited2.yaml", shown.replace("level: warn", "level: error"))
    out = ok(cp, "apply", path)
    assert 'If-Match: "3"' in out and "created version 4" in out, out


@test
def long_messages():
    cp = ControlPlane()
    msg = "\u00e9" * 512  # 1024 bytes of UTF-8, the API's limit; 3072 bytes percent-encoded
    out = ok(cp, "set", "log.level=warn", "-m", msg)
    assert "created version 2" in out, out
    out = ok(cp, "apply", cp.fleet, "-m", msg[:400] + "x")
    assert "created version 3" in out, out
    v = json.loads(ok(cp, "versions", "--json"))["versions"]
    assert v[0]["message"] == msg[:400] + "x" and v[1]["message"] == msg, v[:2]
    # one byte more is a usage error, before any request (nothing listens on this URL)
    dead = f"http://127.0.0.1:{pwtest.free_port()}"
    for args in (("set", "log.level=info"), ("apply", cp.fleet), ("rollback", "1"), ("tag", "t", "1")):
        rc, out, err = ctl(None, *args, "-m", msg + "x", env={"PATHWAY_URL": dead})
        assert rc == 2 and "at most 1024 bytes" in err, (args, rc, err)
    assert active_document(cp)[0] == 3


BAD_CA = 'services.eth.endpoints.0={"url":"https://127.0.0.1:8545","tls":{"ca_file":"/nonexistent/ca.pem"}}'


@test
def wait_for_the_dataplanes():
    """--wait: exit 0 once every connected dataplane ACKed, 1 with each one's error on a NACK, 4 on
    a timeout; progress on stderr."""
    cp = ControlPlane()
    start_dataplane(cp)
    wait_dataplane(cp, "synced", 1)

    changed = pwtest.write_file(cp.dir, "changed.yaml", FLEET.replace("level: info", "level: warn"))
    rc, out, err = ctl(cp, "apply", changed, "--wait")
    assert rc == 0, (rc, out, err)
    assert "created version 2" in out and "version 2: ACKed by all 1 connected dataplanes" in out, out
    assert json.loads(ok(cp, "dataplanes", "--json"))["dataplanes"][0]["applied_version"] == 2

    # a version the dataplane cannot apply: exit 1 with its error, at once
    t0 = time.time()
    rc, out, err = ctl(cp, "set", BAD_CA, "--wait=20s")
    assert rc == 1, (rc, out, err)
    assert "created version 3" in out, out
    assert "version 3 failed on 1 of 1 connected dataplanes" in err, err
    assert "  dp-1: rejected version 3: services[0].endpoints[0].tls.ca_file: cannot read CA bundle /nonexistent/ca.pem" in err, err
    assert time.time() - t0 < 15, "a NACK ends the wait"

    # rollback previous (version 2) --wait: ACKed
    rc, out, err = ctl(cp, "rollback", "previous", "--wait=20s", "-m", "CA not deployed")
    assert rc == 0, (rc, out, err)
    assert "created version 4 (rollback to 2" in out and "version 4: ACKed by all 1 connected dataplanes" in out, out

    # a second dataplane that never fetches the new version: the wait times out (exit 4), naming it
    report(cp, "dp-ghost", 4)
    rc, out, err = ctl(cp, "set", "log.level=error", "--wait=1500ms")
    assert rc == 4, (rc, out, err)
    assert "waiting for version 5: " in err, err  # progress
    assert "timed out after 1.5s waiting for version 5: 1 of 2 connected dataplanes ACKed" in err, err
    assert "not yet: dp-ghost stale" in err, err
    # it catches up: a wait on the active version (nothing to change) ends at once
    report(cp, "dp-ghost", 5)
    rc, out, err = ctl(cp, "set", "log.level=error", "--wait=5s")
    assert rc == 0 and "no change" in out and "version 5: ACKed by all 2 connected dataplanes" in out, (rc, out, err)

    # --wait is for the commands that store a version; --dry-run stores none
    rc, out, err = ctl(cp, "versions", "--wait")
    assert rc == 2 and "does not apply" in err, (rc, err)
    rc, out, err = ctl(cp, "set", "log.level=info", "--dry-run", "--wait")
    assert rc == 2, (rc, err)
    rc, out, err = ctl(cp, "set", "log.level=info", "--wait=soon")
    assert rc == 2 and "--wait: a duration" in err, (rc, err)


class Heartbeat(threading.Thread):
    """A dataplane that exists only in the test: repeats `body` as its status report every 200 ms."""

    def __init__(self, cp, dp_id, body):
        super().__init__(daemon=True)
        self.cp, self.dp_id, self.body, self.stopped = cp, dp_id, body, threading.Event()
        report(cp, dp_id, **body)
        self.start()

    def run(self):
        while not self.stopped.wait(0.2):
            report(self.cp, self.dp_id, **self.body)

    def stop(self):
        self.stopped.set()
        self.join()


def ctl_while(cp, react, *args):
    """Runs pathwayctl in the background; once the active version moves past the current one, calls
    react() (the dataplanes answer). Returns (exit code, stdout, stderr)."""
    before = active_document(cp)[0]
    e = {**os.environ, "PATHWAY_URL": cp.url, "PATHWAY_TOKEN": ADMIN_TOKEN, "NO_COLOR": "1",
         "XDG_CONFIG_HOME": tempfile.mkdtemp(prefix="pw-ctl-xdg-")}
    proc = subprocess.Popen([pwtest.binary("pathwayctl"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=e)
    deadline = time.time() + 10
    while active_document(cp)[0] == before and time.time() < deadline:
        time.sleep(0.05)
    react()
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


@test
def wait_ignores_disconnected_and_status_exit_codes():
    """status exits 1 when a dataplane is rejected or disconnected (0 when all are synced); --wait
    does not wait for a disconnected one."""
    cp = ControlPlane(extra="heartbeat_timeout: 1s\n")
    dp_a = Heartbeat(cp, "dp-a", {"version": 1})
    report(cp, "dp-b", 1)  # then it stops calling
    try:
        rc, out, err = ctl(cp, "status")
        assert rc == 0 and "dataplanes     2 (2 synced)" in out, (rc, out, err)
        time.sleep(1.3)
        rc, out, err = ctl(cp, "status")
        assert rc == 1 and "dataplanes     2 (1 synced, 1 disconnected)" in out, (rc, out, err)
        assert [ln.split()[:2] for ln in out.splitlines() if ln.startswith("dp-b")] == [["dp-b", "disconnected"]], out

        # dp-a NACKs version 2 while --wait waits; dp-b, disconnected, is not waited for
        def nack():
            dp_a.body = {"version": 2, "applied": False, "error": "log.level: not today"}
        rc, out, err = ctl_while(cp, nack, "set", "log.level=warn", "--wait=20s")
        assert rc == 1, (rc, out, err)
        assert "version 2 failed on 1 of 1 connected dataplanes; 1 disconnected, not waited for:" in err, err
        assert "  dp-a: rejected version 2: log.level: not today" in err, err
        rc, out, err = ctl(cp, "status")
        assert rc == 1 and "(0 synced, 1 rejected, 1 disconnected)" in out, (rc, out)

        # it ACKs the rollback: exit 0, naming the disconnected one it did not wait for
        def ack():
            dp_a.body = {"version": 3}
        rc, out, err = ctl_while(cp, ack, "rollback", "1", "--wait=20s")
        assert rc == 0, (rc, out, err)
        assert "version 3: ACKed by all 1 connected dataplanes; 1 disconnected, not waited for" in out, out
    finally:
        dp_a.stop()


@test
def rollback_previous():
    """`previous` is the version active before the active one: rollback previous twice undoes itself."""
    cp = ControlPlane()
    rc, out, err = ctl(cp, "rollback", "previous")
    assert rc == 1 and "no previous version: version 1 is the first" in err, (rc, err)
    ok(cp, "set", "limiter.max_concurrent=150")  # 2
    ok(cp, "set", "limiter.max_concurrent=175")  # 3
    out = ok(cp, "rollback", "previous", "-m", "undo")
    assert "created version 4 (rollback to 2" in out and "~ limiter.max_concurrent: 175 -> 150" in out, out
    out = ok(cp, "rollback", "previous")
    assert "created version 5 (rollback to 3" in out and "~ limiter.max_concurrent: 150 -> 175" in out, out
    # the other commands that take a version take it too
    assert ok(cp, "show", "previous", "--json").count('"version": 4') == 1
    out = ok(cp, "diff", "previous")
    assert out.splitlines()[0].startswith("--- version 4") and "~ limiter.max_concurrent: 150 -> 175" in out, out


@test
def apply_dry_run_and_diff_file():
    """apply --dry-run FILE prints what would change and stores nothing; diff FILE compares a file
    with the active version (both in the canonical form the control plane stores)."""
    cp = ControlPlane()
    changed = pwtest.write_file(cp.dir, "changed.yaml", FLEET.replace("max_concurrent: 100", "max_concurrent: 150")
                                + "defaults:\n  pool:\n    max_idle_per_host: 10\n")
    out = ok(cp, "apply", "--dry-run", changed)
    assert out.startswith(f"dry run, nothing stored: {changed} is valid; changes from the active version 1:"), out
    assert "~ limiter.max_concurrent: 100 -> 150" in out, out
    assert "~ defaults.pool.max_idle_per_host: 25 -> 10 (inherited by eth, poly)" in out, out
    assert active_document(cp)[0] == 1  # nothing stored
    assert len(json.loads(ok(cp, "versions", "--json"))["versions"]) == 1

    out = ok(cp, "diff", changed)
    lines = out.splitlines()
    assert lines[0].startswith("--- version 1 (apply by seed") and lines[1] == f"+++ {changed} (a file, not stored)", out
    assert lines[2:] == ["~ defaults.pool.max_idle_per_host: 25 -> 10 (inherited by eth, poly)",
                         "~ limiter.max_concurrent: 100 -> 150"], out
    # a version against a file, stdin, and the same document: no changes (defaults filled in alike)
    out = ok(cp, "diff", "1", "-", stdin=FLEET)
    assert out.splitlines()[1] == "+++ - (a file, not stored)" and "(no changes)" in out, out
    out = ok(cp, "apply", "--dry-run", cp.fleet)
    assert "(none: the active version has this document)" in out, out
    # a viewer may not validate: the file is checked with pathwayctl's own schema instead
    out = ok(cp, "diff", changed, token=VIEWER_TOKEN)
    assert "~ limiter.max_concurrent: 100 -> 150" in out, out
    # ... and redacted as the control plane redacts documents for viewers: no key of the file shows
    keyed = pwtest.write_file(cp.dir, "keyed.yaml", FLEET.replace("http://127.0.0.1:8547", "http://127.0.0.1:8547/v2/SECRETKEY"))
    out = ok(cp, "diff", keyed, token=VIEWER_TOKEN)
    assert "SECRETKEY" not in out and "services.poly.endpoints.0.url" in out and "<redacted>" in out, out

    # an invalid file: its errors, exit 1, nothing stored
    bad = pwtest.write_file(cp.dir, "bad.yaml", FLEET.replace("max_concurrent: 100", "max_concurrent: -1"))
    rc, out, err = ctl(cp, "apply", "--dry-run", bad)
    assert rc == 1 and f"{bad}: limiter.max_concurrent:" in err, (rc, out, err)
    rc, out, err = ctl(cp, "diff", bad, token=VIEWER_TOKEN)
    assert rc == 1 and f"{bad}: limiter.max_concurrent:" in err, (rc, out, err)
    assert active_document(cp)[0] == 1
    rc, out, err = ctl(cp, "diff", changed, "--json")
    assert rc == 2 and "not a file" in err, (rc, err)


@test
def diff_shows_inherited_values():
    """A service override shows the value it replaces (inherited from defaults), a defaults change
    the services it reaches."""
    fleet = FLEET + "defaults:\n  pool:\n    max_idle_per_host: 25\n"
    cp = ControlPlane(fleet=fleet)
    out = ok(cp, "set", "services.eth.pool.max_idle_per_host=5")
    assert "~ services.eth.pool.max_idle_per_host: 25 -> 5 (was inherited from defaults)" in out, out
    out = ok(cp, "set", "defaults.pool.max_idle_per_host=30")
    assert "~ defaults.pool.max_idle_per_host: 25 -> 30 (inherited by poly)" in out, out
    out = ok(cp, "set", "services.eth.pool.max_idle_per_host=null")
    assert "~ services.eth.pool.max_idle_per_host: 5 -> 30 (now inherited from defaults)" in out, out
    out = ok(cp, "diff", "1", "4")
    assert out.splitlines()[2:] == ["~ defaults.pool.max_idle_per_host: 25 -> 30 (inherited by eth, poly)"], out


@test
def did_you_mean():
    """A service id, a command or a tag that does not exist: an error that names the near one, and
    nothing created."""
    cp = ControlPlane()
    rc, out, err = ctl(cp, "set", "services.eht.pool.max_conns_per_host=5")
    assert rc == 1 and 'no service "eht"; did you mean "eth"?' in err, (rc, err)
    assert active_document(cp)[0] == 1
    rc, out, err = ctl(cp, "set", "services.bsc.endpoints=[{\"url\":\"http://127.0.0.1:8600\"}]")
    assert rc == 1 and 'no service "bsc"' in err and "--create" in err, (rc, err)
    assert active_document(cp)[0] == 1

    rc, out, err = ctl(cp, "stauts")
    assert rc == 2 and 'unknown command "stauts"; did you mean "status"?' in err, (rc, err)

    ok(cp, "tag", "stable", "1")
    for args in (("tag", "stabel"), ("rollback", "stabel"), ("show", "stabel"), ("diff", "stabel")):
        rc, out, err = ctl(cp, *args)
        assert rc == 1 and 'no tag "stabel"; did you mean "stable"?' in err, (args, rc, err)
    rc, out, err = ctl(cp, "show", "zzz")
    assert rc == 1 and 'no tag "zzz" (there are: stable)' in err, (rc, err)


@test
def version_flag():
    dead = f"http://127.0.0.1:{pwtest.free_port()}"
    rc, out, err = ctl(None, "--version", env={"PATHWAY_URL": dead})
    assert rc == 0 and out.startswith("pathwayctl ") and len(out.split()) == 2, (rc, out, err)
    # the project's version where the build generates common/pw_version.h, else "0.0.0-dev"
    header = os.path.join(pwtest.BUILD_DIR, "common", "pw_version.h")
    want = "0.0.0-dev"
    if os.path.exists(header):
        want = re.search(r'#define PW_VERSION "([^"]*)"', open(header).read()).group(1)
    assert out == f"pathwayctl {want}\n", (out, want)
    # after a command too: prints the version, runs nothing (nothing listens there)
    rc, out2, err = ctl(None, "status", "--version", env={"PATHWAY_URL": dead})
    assert rc == 0 and out2 == out, (rc, out2, err)


if __name__ == "__main__":
    pwtest.main()
