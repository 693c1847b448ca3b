"""The load test (tools/load_test/run.sh) as operators run it: `make load_test LOCAL=1 DURATION=5s`
passes its thresholds on a bare build; missed thresholds, an absent dataplane and bad flags give
their exit codes; --rate paces.

Skips (exit 77, ctest SKIP_RETURN_CODE) only when the `pathway` binary is not built at all."""

import os
import re
import subprocess
import sys
import tempfile

import pwtest
from pwtest import test

RUN = os.path.join(pwtest.SOURCE_DIR, "tools", "load_test", "run.sh")


def run(*args, timeout=90):
    p = subprocess.run([RUN, *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def row(out, service):
    """The report's row of a service as a dict of its columns."""
    lines = out.splitlines()
    head = next(l for l in lines if l.startswith("SERVICE"))
    cols = re.split(r"\s{2,}", head.strip())
    for l in lines:
        if l.split() and l.split()[0] == service and l is not head:
            return dict(zip(cols, l.split()))
    raise AssertionError(f"no row for {service} in:\n{out}")


def start_dataplane(services):
    """Mocks for `services` and a dataplane in front of them (only these services)."""
    mocks = {}
    for s in services:
        port = pwtest.free_port()
        pwtest.Proc([pwtest.binary("pathway-mock-upstream"), "--port", str(port)], name=f"mock-{s}")
        pwtest.wait_port(port)
        mocks[s] = port
    port, admin = pwtest.free_port(), pwtest.free_port()
    d = tempfile.mkdtemp(prefix="pw-load-")
    conf = [f"listen:\n  - address: 127.0.0.1:{port}", f"admin:\n  address: 127.0.0.1:{admin}", "threads: 1",
            "log:\n  level: warn", "services:"]
    conf += [f"  - id: {s}\n    endpoints:\n      - url: http://127.0.0.1:{p}" for s, p in mocks.items()]
    path = pwtest.write_file(d, "pathway.yaml", "\n".join(conf) + "\n")
    pwtest.Proc([pwtest.binary("pathway"), "-c", path], name="pathway")
    pwtest.wait_port(port)
    pwtest.wait_port(admin)
    return port, admin


@test
def make_load_test_local_passes():
    # exactly what `make load_test LOCAL=1 DURATION=5s` runs
    rc, out, err = run("--build", pwtest.BUILD_DIR, "--services", "eth,poly", "--url", "http://127.0.0.1:3069",
                       "--duration", "5s", "--rate", "0", "--min-success", "99.9", "--max-p99", "1000ms", "--local")
    assert rc == 0, f"exit {rc}\n{out}\n{err}"
    for s in ("eth", "poly"):
        r = row(out, s)
        assert r["RESULT"] == "pass", r
        assert int(r["REQUESTS"]) > 0 and float(r["HTTP OK"].rstrip("%")) >= 99.9, r
        assert float(r["RPC ERR"].rstrip("%")) < 0.1, r  # the mock answers all nine methods and the batch
    assert "dataplane /stats" in out and "memory: rss_MiB" in out and "limiter:" in out, out
    assert "eth pool:" in out, out
    assert out.rstrip().splitlines()[-1].startswith("PASS"), out


@test
def missed_threshold_exits_1():
    port, admin = start_dataplane(["eth"])
    # poly is not a service of this dataplane: every request gets 404
    rc, out, err = run("--services", "eth,poly", "--url", f"http://127.0.0.1:{port}", "--admin", f"http://127.0.0.1:{admin}",
                       "--duration", "2s")
    assert rc == 1, f"exit {rc}\n{out}\n{err}"
    assert row(out, "eth")["RESULT"] == "pass", out
    assert row(out, "poly")["RESULT"] == "FAIL", out
    assert "poly: HTTP success 0.000% < 99.9%" in out, out
    assert "non-2xx 404:" in out, out
    # an impossible p99 fails too
    rc, out, err = run("--services", "eth", "--url", f"http://127.0.0.1:{port}", "--admin", f"http://127.0.0.1:{admin}",
                       "--duration", "1s", "--max-p99", "0ms")
    assert rc == 1 and "p99" in out, f"exit {rc}\n{out}\n{err}"


@test
def rate_is_paced():
    port, admin = start_dataplane(["eth"])
    rc, out, err = run("--services", "eth", "--url", f"http://127.0.0.1:{port}", "--admin", f"http://127.0.0.1:{admin}",
                       "--duration", "3s", "--rate", "200")
    assert rc == 0, f"exit {rc}\n{out}\n{err}"
    rps = int(row(out, "eth")["REQ/S"])
    assert 170 <= rps <= 215, out


@test
def unreachable_and_usage():
    dead = pwtest.free_port()
    rc, out, err = run("--url", f"http://127.0.0.1:{dead}", "--duration", "1s")
    assert rc == 3 and "no dataplane answers" in err, (rc, out, err)
    rc, out, err = run("--duration", "soon")
    assert rc == 2 and "not a duration" in err, (rc, err)
    rc, out, err = run("--services", "eth/../x")
    assert rc == 2, (rc, err)
    rc, out, err = run("--local", "--build", "/nonexistent-build")
    assert rc == 2 and "build it first" in err, (rc, err)


if __name__ == "__main__":
    if not os.path.exists(os.path.join(pwtest.BUILD_DIR, "dataplane", "pathway")):
        print(f"SKIP: the dataplane binary is not built ({pwtest.BUILD_DIR}/dataplane/pathway); the load test needs it")
        sys.exit(77)
    pwtest.main()
