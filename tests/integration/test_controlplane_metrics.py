"""The control plane's /metrics passes `promtool check metrics` with no warning (issue 9), scraped
live from a server with versions, dataplanes in several states and a parked poll; gauges never end
in _total; pathway_control_build_info and the standard process_* metrics are there. Skipped
(exit 77) where promtool is not installed (Debian's prometheus package has it)."""

import os
import re
import shutil
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402
from cp_util import DATAPLANE, VIEWER, ControlPlane, expect, fleet  # noqa: E402


def families(text):
    types = {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)$", line)
        if m:
            types[m.group(1)] = m.group(2)
    return types


@pwtest.test
def test_promtool_passes_a_live_scrape():
    cp = ControlPlane()
    v1 = expect(cp.call("PUT", "/v1/config", fleet("info")), 201)[2]
    expect(cp.call("PUT", "/v1/config", fleet("warn")), 201)
    expect(cp.call("POST", "/v1/dataplanes/dp-1/status", {"version": 2, "applied": True}, token=DATAPLANE), 200)
    expect(cp.call("POST", "/v1/dataplanes/dp-2/status", {"version": 2, "applied": False, "error": "no"}, token=DATAPLANE), 200)
    expect(cp.call("POST", "/v1/dataplanes/dp-3/status", {"version": 1, "applied": True, "hash": v1["hash"]}, token=DATAPLANE), 200)
    expect(cp.call("POST", "/v1/dataplanes/dp-4/status", {"version": 2, "applied": True, "hash": "cd" * 32}, token=DATAPLANE), 200)
    s = socket.create_connection(("127.0.0.1", cp.port), timeout=5)
    s.sendall(("GET /v1/dataplanes/dp-5/config?version=2&wait=30s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
               + DATAPLANE + "\r\n\r\n").encode())
    cp.call("GET", "/nowhere")
    status, hdrs, body = cp.request("GET", "/metrics", token=VIEWER)
    s.close()
    assert status == 200 and hdrs["content-type"].startswith("text/plain; version=0.0.4"), (status, hdrs)
    text = body.decode()
    types = families(text)
    for name, kind in (("pathway_control_build_info", "gauge"), ("process_cpu_seconds_total", "counter"),
                       ("process_resident_memory_bytes", "gauge"), ("process_virtual_memory_bytes", "gauge"),
                       ("process_start_time_seconds", "gauge"), ("process_open_fds", "gauge"), ("process_max_fds", "gauge"),
                       ("pathway_control_max_connections", "gauge"), ("pathway_control_max_long_polls", "gauge"),
                       ("pathway_control_reserved_connections", "gauge"), ("pathway_control_max_dataplanes", "gauge"),
                       ("pathway_control_connections", "gauge"), ("pathway_control_api_requests_total", "counter")):
        assert types.get(name) == kind, (name, types.get(name))
    for name, kind in types.items():
        assert name.endswith("_total") == (kind == "counter"), f"{name} is a {kind}"
    assert re.search(r'^pathway_control_build_info\{version="\d+\.\d+\.\d+[^"]*",h2o="[^"]+",sqlite="[^"]+"\} 1$', text, re.M), text
    for state, n in (("synced", 1), ("rejected", 1), ("stale", 2), ("drifted", 1), ("applying", 0)):
        assert f'pathway_control_dataplanes{{state="{state}"}} {n}\n' in text, (state, text)
    assert "pathway_control_long_polls 1\n" in text
    promtool = shutil.which("promtool")
    if promtool is None:
        print("SKIP: promtool not installed (apt-get install prometheus)")
        sys.exit(77)
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b"", (r.returncode, r.stdout, r.stderr, text)
    # promtool is awake: a gauge named like a counter is a finding
    bad = body + b"# HELP pathway_control_bad_total x\n# TYPE pathway_control_bad_total gauge\npathway_control_bad_total 1\n"
    r = subprocess.run([promtool, "check", "metrics"], input=bad, capture_output=True, timeout=60)
    assert r.returncode != 0 or r.stdout or r.stderr, "promtool took a gauge ending in _total"
    assert cp.stop() == 0


if __name__ == "__main__":
    pwtest.main()
