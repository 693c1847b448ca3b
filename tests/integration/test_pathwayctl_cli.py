"""pathwayctl against a real pathway-control on 127.0.0.1: apply, set, diff, rollback, tags, the 412
path, validation errors, auth failures and an unreachable server, each checked by exit code and by
what the user reads."""

import json
import os
import subprocess
import tempfile
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
    """A pathway-control in a temporary directory, seeded with FLEET as version 1."""

    def __init__(self, seed=True):
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
            "  - {name: fleet, role: dataplane, file: dataplane.token}\n",
        )
        self.fleet = pwtest.write_file(self.dir, "fleet.yaml", FLEET)
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


@test
def managed_dataplane_states():
    cp = ControlPlane()
    admin = pwtest.free_port()
    conf = pwtest.write_file(cp.dir, "dp.yaml", f"""\
listen:
  - address: 127.0.0.1:{pwtest.free_port()}
admin:
  address: 127.0.0.1:{admin}
threads: 1
control_plane:
  url: {cp.url}
  token_file: {cp.dir}/dataplane.token
  id: dp-1
  state_dir: {cp.dir}
""")
    pwtest.Proc([pwtest.binary("pathway"), "-c", conf], name="pathway")
    wait_dataplane(cp, "synced", 1)
    out = ok(cp, "status")
    assert "dataplanes     1 (1 synced)" in out, out
    table = out.split("\n\n", 1)[1].splitlines()
    assert table[0].split() == ["ID", "STATE", "APPLIED", "LAST", "SEEN", "LABELS", "ERROR"], out
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


if __name__ == "__main__":
    pwtest.main()
