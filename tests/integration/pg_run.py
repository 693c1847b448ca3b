"""Runs a command with a throwaway PostgreSQL: starts a cluster (pg_util.py), puts its URL in
PW_TEST_STORE_URL, runs the command, stops and removes the cluster, and exits with the command's
status. Exits 77 (ctest: skipped) with a clear message where PostgreSQL is not installed.

    python3 tests/integration/pg_run.py build/tests/test_cp_store
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg_util  # noqa: E402


def main():
    if len(sys.argv) < 2:
        print("usage: pg_run.py COMMAND [ARG...]", file=sys.stderr)
        return 2
    pg_util.skip_unless_pg()
    cluster = pg_util.Cluster()
    try:
        env = dict(os.environ, PW_TEST_STORE_URL=cluster.url)
        print(f"pg_run: PostgreSQL at {cluster.url}", flush=True)
        return subprocess.run(sys.argv[1:], env=env).returncode
    finally:
        cluster.destroy()


if __name__ == "__main__":
    sys.exit(main())
