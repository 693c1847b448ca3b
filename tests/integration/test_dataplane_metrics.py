"""The dataplane's /metrics (issue 9): `promtool check metrics` passes without a warning on a live
scrape; build info, the standard process_* metrics and the configured limits are there; every
upstream series names its service; no series has an empty service label; no gauge ends in _total.
`pathway --version` prints the project's one version."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402
from dp_util import Pathway, promtool_check, start_mock  # noqa: E402
from pwtest import main, test  # noqa: E402

CALL = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}


def project_version():
    with open(os.path.join(pwtest.SOURCE_DIR, "CMakeLists.txt")) as f:
        return re.search(r"project\(pathway VERSION ([0-9.]+)", f.read()).group(1)


def families(text):
    """{name: type} from the # TYPE lines."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


@test
def test_promtool_clean_and_required_series():
    _, up = start_mock()
    _, down = start_mock()
    pw = Pathway([("eth", [f"http://127.0.0.1:{up}"], "limiter:\n  max_concurrent: 9"),
                  ("poly", [f"http://127.0.0.1:{down}", "http://127.0.0.1:1"], "pool:\n  max_conns_per_host: 13")],
                 extra="limiter:\n  max_concurrent: 77\n  max_queue: 333\npool:\n  max_idle_total: 44")
    for sid in ("eth", "poly", "poly", "poly"):
        pw.rpc(sid, CALL)
    assert pw.rpc("nope", CALL)[0] == 404  # a request no service is named for
    text = pw.metrics()
    promtool_check(text)

    types = families(text)
    for name, t in types.items():
        assert not (t == "gauge" and name.endswith("_total")), f"gauge {name} ends in _total"
    assert f'pathway_build_info{{version="{project_version()}"}} 1' in text
    for name in ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
                 "process_start_time_seconds", "process_virtual_memory_bytes"]:
        assert re.search(rf"^{name} [0-9.e+]+$", text, re.M), name
    # configured limits, so saturation is a division
    assert 'pathway_limiter_max_concurrent{scope="process"} 77' in text
    assert 'pathway_limiter_max_queue{scope="process"} 333' in text
    assert 'pathway_limiter_max_concurrent{scope="service",service="eth"} 9' in text
    assert 'pathway_pool_max_idle_connections 44' in text
    assert f'pathway_upstream_max_connections{{service="poly",endpoint="127.0.0.1:{down}"}} 13' in text
    assert f'pathway_upstream_max_idle_connections{{service="eth",endpoint="127.0.0.1:{up}"}} 25' in text
    # every upstream series names its service; no empty service label anywhere
    for line in text.splitlines():
        if line.startswith("pathway_upstream_"):
            assert re.match(r'^pathway_upstream_\w+\{service="(eth|poly)",endpoint="[^"]+"', line), line
        assert 'service=""' not in line, line
    assert re.search(r'^pathway_requests_unrouted_total\{class="4xx"\} 1$', text, re.M), text
    assert "pathway_config_version 0\n" in text and "pathway_config_generation 1\n" in text
    # /stats shows the same facts
    st = pw.stats()
    assert st["limiter"]["max_concurrent"] == 77 and st["limiter"]["max_queue"] == 333, st["limiter"]
    assert st["upstream"]["max_idle_total"] == 44 and st["build_version"] == project_version(), st
    proc = st["process"]
    assert proc["resident_memory_bytes"] > 0 and proc["open_fds"] > 0 and proc["max_fds"] >= proc["open_fds"], proc
    assert proc["start_time_seconds"] > 1.7e9 and proc["cpu_seconds"] >= 0, proc


@test
def test_version_flag():
    # every binary the project builds prints the one project version
    for name in ("pathway", "pathway-control", "pathwayctl", "pathway-config", "pathway-mock-upstream"):
        r = subprocess.run([pwtest.binary(name), "--version"], capture_output=True, timeout=10)
        assert r.returncode == 0, (name, r)
        assert r.stdout.decode().strip() == f"{name} {project_version()}", (name, r.stdout)


if __name__ == "__main__":
    main()
