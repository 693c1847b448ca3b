"""pathway-control backup FILE (issue 9): sqlite's online backup of the store, taken while the
server writes to it, restores to a database that serves the same history; and --version."""

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402
from cp_util import ControlPlane, expect, fleet  # noqa: E402


def run(*args):
    return subprocess.run([pwtest.binary("pathway-control"), *args], capture_output=True, text=True, timeout=60)


@pwtest.test
def test_backup_while_serving_and_restore():
    cp = ControlPlane()
    expect(cp.call("PUT", "/v1/config", fleet("info")), 201)
    for i in range(10):
        expect(cp.call("PATCH", "/v1/config", {"defaults": {"pool": {"max_conns_per_host": 10 + i}}}), 201)
    expect(cp.call("PUT", "/v1/tags/stable", {"version": 3}), 200)
    out = tempfile.mkdtemp(prefix="pw-backup-")
    stop = threading.Event()
    errors = []

    def writer():
        i = 0
        while not stop.is_set() and i < 400:
            s = cp.call("PATCH", "/v1/config", {"defaults": {"pool": {"max_conns_per_host": 100 + i}}})[0]
            if s != 201:
                errors.append(s)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        backups = []
        for n in range(3):
            dest = os.path.join(out, f"b{n}.db")
            r = run("-c", cp.config, "backup", dest)
            assert r.returncode == 0, r.stderr
            assert "backed up" in r.stdout, r.stdout
            backups.append(dest)
    finally:
        stop.set()
        t.join(60)
    assert not errors, errors
    assert not os.path.exists(os.path.join(out, "b0.db-wal")), os.listdir(out)
    assert oct(os.stat(backups[0]).st_mode & 0o777) == "0o600"
    originals = {v["version"]: v["hash"] for v in cp.call("GET", "/v1/versions?limit=1000")[2]["versions"]}
    for dest in backups:
        con = sqlite3.connect(dest)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = dict(con.execute("SELECT version, hash FROM versions").fetchall())
        con.close()
        # a consistent moment: a dense prefix of the history, each version as the server has it
        assert rows and sorted(rows) == list(range(1, max(rows) + 1)), sorted(rows)
        assert all(originals[v] == h for v, h in rows.items())
    # restore: a pathway-control started on the copy serves that history, tags and events
    restored = os.path.join(out, "restored.db")
    shutil.copy(backups[-1], restored)
    port = pwtest.free_port()
    p = pwtest.Proc([pwtest.binary("pathway-control"), "-c", cp.config, "--database", restored, "--listen", f"127.0.0.1:{port}"],
                    name="pathway-control-restored", cwd="/")
    pwtest.wait_port(port)
    from cp_util import ADMIN
    h = {"Authorization": "Bearer " + ADMIN}
    s, _, body = pwtest.request_json(port, "GET", "/v1/versions?limit=1000", headers=h)
    assert s == 200 and {v["version"]: v["hash"] for v in body["versions"]} == {v: originals[v] for v in range(1, body["active_version"] + 1)}
    s, _, tag = pwtest.request_json(port, "GET", "/v1/tags/stable", headers=h)
    assert s == 200 and tag["version"] == 3
    s, _, ev = pwtest.request_json(port, "GET", "/v1/events", headers=h)
    assert s == 200 and ev["events"]
    # and takes new versions from there
    s, _, _ = pwtest.request_json(port, "PATCH", "/v1/config", body='{"log": {"level": "error"}}',
                                  headers=dict(h, **{"Content-Type": "application/merge-patch+json"}))
    assert s == 201
    assert p.stop() == 0
    assert cp.stop() == 0
    shutil.rmtree(out, ignore_errors=True)


@pwtest.test
def test_backup_errors():
    out = tempfile.mkdtemp(prefix="pw-backup-")
    try:
        r = run("--database", os.path.join(out, "missing.db"), "backup", os.path.join(out, "x.db"))
        assert r.returncode == 1 and "missing.db" in r.stderr, r.stderr
        assert not os.path.exists(os.path.join(out, "missing.db")), "backup created the database it was to copy"
        other = os.path.join(out, "other.db")
        sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
        r = run("--database", other, "backup", os.path.join(out, "x.db"))
        assert r.returncode == 1 and "not a pathway-control database" in r.stderr, r.stderr
        assert not os.path.exists(os.path.join(out, "x.db"))
        r = run("--database", other, "backup")
        assert r.returncode == 2 and "backup" in r.stderr, r.stderr
        r = run("backup", os.path.join(out, "x.db"))
        assert r.returncode == 2 and "-c CONFIG or --database" in r.stderr, r.stderr
        cp = ControlPlane()
        r = run("-c", cp.config, "backup", os.path.join(out, "no-such-dir", "x.db"))
        assert r.returncode == 1 and "no-such-dir" in r.stderr, r.stderr
        assert cp.stop() == 0
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pwtest.test
def test_version():
    r = run("--version")
    assert r.returncode == 0 and re.fullmatch(r"pathway-control \d+\.\d+\.\d+(-\w+)?\n", r.stdout), r.stdout
    r = run("--help")
    assert "backup" in r.stdout and "--version" in r.stdout


if __name__ == "__main__":
    pwtest.main()
