"""The load test (tools/load_test/run.sh) as operators run it: `make load_test LOCAL=1 DURATION=5s`
passes its thresholds on a bare build; missed thresholds, an absent dataplane and bad flags give
their exit codes; --rate paces (and caps connections at low rates); late responses are failures;
SIGTERM stops wrk; the mock counts the requests it hangs.

Skips (exit 77, ctest SKIP_RETURN_CODE) only when the `pathway` binary is not built at all."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pwtest
from pwtest import test

RUN = os.path.join(pwtest.SOURCE_DIR, "tools", "load_test", "run.sh")
sys.path.insert(0, os.path.join(pwtest.SOURCE_DIR, "tools", "load_test"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import load_test  # noqa: E402  (its accounting, tested without wrk)


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


@test
def late_responses_are_failures():
    # every answer takes 1.5 s, --timeout is 1 s: wrk counts them as responses ("timeout" errors) and
    # leaves them out of its latency histogram; they are failures and p99 is at least --timeout
    rc, out, err = run("--build", pwtest.BUILD_DIR, "--local", "--services", "eth", "--mock-latency", "1500",
                       "--timeout", "1s", "--duration", "3s", "--connections", "4", "--min-success", "50",
                       "--max-p99", "500ms")
    assert rc == 1, f"exit {rc}\n{out}\n{err}"
    r = row(out, "eth")
    assert r["HTTP OK"] == "0.000%" and r["RESULT"] == "FAIL", out
    assert float(r["P99"].rstrip("ms")) >= 1000, out
    assert "HTTP success 0.000% < 50.0%" in out and "p99 1000.00ms > 500ms" in out, out
    assert "came after --timeout 1s" in out, out


@test
def accounting_of_wrk_counters():
    def counters(responses, started, http_ok, read=0, write=0, connect=0, timeout=0, p99=1000):
        return {"duration_us": 30_000_000, "responses": responses, "started": started, "http_ok": http_ok,
                "http_other": responses - http_ok, "rpc_results": http_ok, "rpc_errors": 0, "statuses": {},
                "socket_errors": {"connect": connect, "read": read, "write": write, "timeout": timeout},
                "latency_us": {"p50": p99, "p95": p99, "p99": p99, "max": p99, "mean": p99}}
    # --rate 1 over 30 s: 31 answers, all 2xx, and 26 idle keep-alive closes (read errors, no request lost)
    r = load_test.account(counters(31, 32, 31, read=26), 16, 5e6)
    assert r["http_success_pct"] == 100.0 and r["read_failures"] == 0, r
    # requests written and never answered, beyond one in flight per connection at the end: failures
    r = load_test.account(counters(80, 100, 80, read=30), 2, 5e6)
    assert r["read_failures"] == 18 and r["attempts"] == 98, r
    # late answers: not OK, p99 at least the timeout
    r = load_test.account(counters(10, 10, 10, timeout=4, p99=900), 4, 1e6)
    assert r["ok"] == 6 and r["http_success_pct"] == 60.0 and r["latency_us"]["p99"] == 1_000_000, r
    # connect and write errors are failed attempts
    r = load_test.account(counters(90, 95, 90, connect=5, write=5), 4, 5e6)
    assert r["attempts"] == 100 and r["http_success_pct"] == 90.0, r


@test
def low_rate_caps_connections():
    port, admin = start_dataplane(["eth"])
    rc, out, err = run("--services", "eth", "--url", f"http://127.0.0.1:{port}", "--admin", f"http://127.0.0.1:{admin}",
                       "--duration", "2s", "--rate", "2", "--connections", "16")
    assert rc == 0, f"exit {rc}\n{out}\n{err}"
    assert "--connections 16 capped to 4 for --rate 2" in out, out
    assert "4 connections x 1 wrk thread(s)" in out, out


@test
def make_load_test_with_nothing_running_says_how_to_start():
    # `make load_test` as a new operator types it, with no dataplane at URL: a quick non-zero exit that
    # names both ways to get one (make run, LOCAL=1), not a stack trace or a long wait
    dead = pwtest.free_port()
    start = time.time()
    p = subprocess.run(["make", "-s", "-C", pwtest.SOURCE_DIR, "load_test", f"URL=http://127.0.0.1:{dead}",
                        f"BUILD={pwtest.BUILD_DIR}"], capture_output=True, text=True, timeout=60, env=pwtest.make_env())
    took = time.time() - start
    assert p.returncode != 0, (p.returncode, p.stdout, p.stderr)
    assert f"no dataplane answers at http://127.0.0.1:{dead}" in p.stderr, p.stderr
    assert "make run" in p.stderr and "make load_test LOCAL=1" in p.stderr, p.stderr
    assert took < 15, f"took {took:.1f}s to say nothing answers"
    assert "Traceback" not in p.stderr, p.stderr


@test
def make_load_test_admin_variable_and_progress():
    # through make: ADMIN=host:port names the admin listener, and while wrk runs a progress line comes
    # about once a second with the responses the dataplane counted so far
    port, admin = start_dataplane(["eth"])
    cmd = ["make", "-s", "-C", pwtest.SOURCE_DIR, "load_test", f"URL=http://127.0.0.1:{port}", f"ADMIN=127.0.0.1:{admin}",
           "SERVICE_IDS=eth", "DURATION=4s", "RATE=300", f"BUILD={pwtest.BUILD_DIR}"]
    start = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=pwtest.make_env())
    lines = []  # (seconds since start, line)
    try:
        for line in p.stdout:
            lines.append((time.time() - start, line.rstrip("\n")))
        p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    end = time.time() - start
    out = "\n".join(l for _, l in lines)
    assert p.returncode == 0, f"exit {p.returncode}\n{out}\n{p.stderr.read()}"
    prog = [(t, l) for t, l in lines if re.match(r"\s*\[\d+s/4s\] ", l)]
    assert len(prog) >= 3, out
    # printed while the run went on, spread over it, not all at the end
    assert prog[0][0] < end - 2, (prog, end)
    assert prog[-1][0] - prog[0][0] >= 1.5, prog
    counts = [int(m.group(1)) for _, l in prog for m in [re.search(r"eth (\d+) responses \((\d+)/s\)", l)] if m]
    assert len(counts) == len(prog) and counts == sorted(counts) and counts[-1] > 0, prog
    # /stats came from ADMIN, not the default 127.0.0.1:9901
    assert f"dataplane /stats (http://127.0.0.1:{admin})" in out, out
    assert "eth responses: 2xx" in out, out


def children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if int(st[st.rindex(")") + 2:].split()[1]) == pid:
                kids.append((int(d), os.path.basename(cmd)))
    return kids


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return False
    return st[st.rindex(")") + 2] != "Z"


@test
def sigterm_stops_wrk():
    port, admin = start_dataplane(["eth"])
    p = subprocess.Popen([RUN, "--services", "eth", "--url", f"http://127.0.0.1:{port}", "--admin",
                          f"http://127.0.0.1:{admin}", "--duration", "60s", "--rate", "50"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wrks, deadline = [], time.time() + 10
        while not wrks and time.time() < deadline:
            wrks = [pid for pid, name in children(p.pid) if name == "wrk"]
            time.sleep(0.1)
        assert wrks, "wrk did not start"
        time.sleep(1)
        p.send_signal(signal.SIGTERM)
        p.wait(15)
        assert p.returncode == 130, p.returncode
        time.sleep(0.2)
        assert not [w for w in wrks if alive(w)], f"wrk survived: {wrks}"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@test
def mock_counts_hung_requests():
    # requests the mock holds with --fault hang are in flight: counted in concurrent and its peak,
    # and uncounted when their clients leave
    port = pwtest.free_port()
    pwtest.Proc([pwtest.binary("pathway-mock-upstream"), "--port", str(port), "--fault", "hang"], name="mock-hang")
    pwtest.wait_port(port)
    body = b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}'
    clients = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body))
        clients.append(s)

    def stats():
        status, _, data = pwtest.request(port, "GET", "/stats")
        assert status == 200, status
        return json.loads(data)

    deadline = time.time() + 5
    while stats()["concurrent"] < 3 and time.time() < deadline:
        time.sleep(0.05)
    st = stats()
    assert st["concurrent"] == 3 and st["peak_concurrent"] == 3 and st["faults"] == 3, st
    for s in clients:
        s.close()
    deadline = time.time() + 5
    while stats()["concurrent"] != 0 and time.time() < deadline:
        time.sleep(0.05)
    st = stats()
    assert st["concurrent"] == 0 and st["connections"] == 0 and st["peak_concurrent"] == 3, st


if __name__ == "__main__":
    if not os.path.exists(os.path.join(pwtest.BUILD_DIR, "dataplane", "pathway")):
        print(f"SKIP: the dataplane binary is not built ({pwtest.BUILD_DIR}/dataplane/pathway); the load test needs it")
        sys.exit(77)
    pwtest.main()
