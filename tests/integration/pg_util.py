"""A throwaway PostgreSQL cluster for the tests: initdb and pg_ctl from Debian's `postgresql`
package (/usr/lib/postgresql/*/bin), run as the `postgres` user through runuser, in a temporary
directory owned by it, on a free 127.0.0.1 port with its unix sockets in that directory, trust
authentication on loopback, fsync on. It is always stopped (pg_ctl stop -m immediate) and removed
when the script exits, whatever happens. Standard library only.

    import pg_util
    pg_util.skip_unless_pg()          # exit 77 (ctest: skipped) when PostgreSQL is not installed
    cluster = pg_util.Cluster()       # started, with database "pathway"
    url = cluster.url                 # postgres://postgres@127.0.0.1:PORT/pathway
    cluster.stop(); cluster.start()   # PostgreSQL down and up again, same data and port
    cluster.psql("SELECT 1")          # a query's rows as text
"""

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77


def pg_bindir():
    """The newest /usr/lib/postgresql/N/bin holding initdb and pg_ctl, or None."""
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            try:
                found.append((int(os.path.basename(os.path.dirname(d))), d))
            except ValueError:
                found.append((0, d))
    return max(found)[1] if found else None


def why_no_pg():
    """Why a cluster cannot be started here ("" when it can)."""
    if pg_bindir() is None:
        return "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; Debian package `postgresql`)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no `postgres` user to run the cluster as (Debian package `postgresql` creates it)"
    if shutil.which("runuser") is None:
        return "no runuser (util-linux) to run PostgreSQL as the postgres user"
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != "postgres":
        return "the tests must run as root (or postgres) to start PostgreSQL as the postgres user"
    return ""


def skip_unless_pg():
    """Exits 77 (ctest SKIP_RETURN_CODE) with a clear message when no cluster can be started."""
    why = why_no_pg()
    if why:
        print(f"SKIP: {why}", flush=True)
        sys.exit(SKIP)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_clusters = []


@atexit.register
def _teardown_all():
    for c in list(_clusters):
        c.destroy()


class Cluster:
    """One running PostgreSQL cluster with database `dbname`; destroy() (also run at exit) stops it
    at once and removes its directory (PW_KEEP_TMP=1 keeps the directory and its log)."""

    def __init__(self, dbname="pathway", settings=None):
        self.bindir = pg_bindir()
        if self.bindir is None:
            raise RuntimeError(why_no_pg())
        self.dbname = dbname
        self.dir = tempfile.mkdtemp(prefix="pw-pg-")
        _clusters.append(self)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        self.port = _free_port()
        self.running = False
        pw = pwd.getpwnam("postgres")
        os.chmod(self.dir, 0o700)
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        try:
            self._run(["initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
            conf = {
                "listen_addresses": "'127.0.0.1'",
                "port": str(self.port),
                "unix_socket_directories": f"'{self.dir}'",
                "fsync": "on",
                "synchronous_commit": "on",
                "max_connections": "100",
                "shared_buffers": "32MB",
                "log_min_messages": "warning",
            }
            conf.update(settings or {})
            with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
                f.write("\n# pg_util.py\n")
                for k, v in conf.items():
                    f.write(f"{k} = {v}\n")
            with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
                f.write("local all all trust\nhost all all 127.0.0.1/32 trust\n")
            self.start()
            self.psql(f'CREATE DATABASE "{dbname}"', db="postgres")
        except BaseException:
            self.destroy()
            raise

    @property
    def url(self):
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.dbname}"

    def _cmd(self, args):
        tool = os.path.join(self.bindir, args[0])
        return ["runuser", "-u", "postgres", "--", tool] + args[1:]

    def _run(self, args, timeout=60, check=True, input=None):
        cmd = self._cmd(args)
        # runuser keeps the caller's cwd, which postgres may not be allowed to enter
        p = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stdout}{p.stderr}{self.tail_log()}")
        return p

    def tail_log(self, n=4000):
        try:
            with open(self.log) as f:
                return "\n--- postgres.log ---\n" + f.read()[-n:]
        except OSError:
            return ""

    def start(self, timeout=30):
        """Starts the cluster (same data, same port) and waits until it accepts connections."""
        self._run(["pg_ctl", "start", "-w", "-t", str(timeout), "-D", self.data, "-l", self.log], timeout=timeout + 10)
        self.running = True
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self._run(["pg_isready", "-h", "127.0.0.1", "-p", str(self.port)], check=False).returncode == 0:
                return
            time.sleep(0.05)
        raise TimeoutError(f"PostgreSQL on port {self.port} not ready after {timeout}s{self.tail_log()}")

    def stop(self, mode="fast"):
        """Stops the cluster (mode: smart, fast, immediate); start() brings it back."""
        if self.running:
            self._run(["pg_ctl", "stop", "-w", "-m", mode, "-D", self.data], check=False)
            self.running = False

    def psql(self, sql, db=None):
        """Runs sql through psql over the unix socket; returns its rows as text (unaligned, tuples only)."""
        psql = os.path.join(self.bindir, "psql")
        if not os.path.exists(psql):
            psql = shutil.which("psql") or psql
        cmd = ["runuser", "-u", "postgres", "--", psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.dir, "-p",
               str(self.port), "-d", db or self.dbname, "-c", sql]
        p = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"psql failed: {p.stderr}")
        return p.stdout

    def destroy(self):
        """Stops the cluster at once and removes its directory; safe to call twice."""
        if self in _clusters:
            _clusters.remove(self)
        if os.path.isdir(self.data) and os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                self._run(["pg_ctl", "stop", "-w", "-m", "immediate", "-D", self.data], check=False, timeout=30)
            except Exception:
                pass
        self.running = False
        if os.environ.get("PW_KEEP_TMP"):
            print(f"pg_util: kept {self.dir}", flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    # a smoke test: python3 pg_util.py
    skip_unless_pg()
    c = Cluster()
    print(c.url, c.psql("SELECT version()").strip())
    c.stop()
    c.start()
    print("restarted:", c.psql("SELECT 1").strip())
    c.destroy()
