"""Helpers for the control plane's integration tests: a pathway-control on 127.0.0.1 with its own
temporary directory, tokens of every role, and requests made with one of them."""

import atexit
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402

ADMIN = "test-admin-token-0123456789abcdef"
VIEWER = "test-viewer-token-0123456789abcdef"
DATAPLANE = "test-dataplane-token-0123456789abcdef"

FLEET = {
    "log": {"level": "info"},
    "services": [{"id": "eth", "endpoints": [{"url": "http://127.0.0.1:8545"}]}],
}


def fleet(level="info", conns=None, extra_service=False):
    """A valid fleet document; the arguments make distinct ones."""
    doc = json.loads(json.dumps(FLEET))
    doc["log"]["level"] = level
    if conns is not None:
        doc["defaults"] = {"pool": {"max_conns_per_host": conns}}
    if extra_service:
        doc["services"].append({"id": "poly", "endpoints": [{"url": "http://127.0.0.1:8547"}]})
    return doc


_made_dirs = []


@atexit.register
def _remove_dirs():
    # pwtest.main has stopped every process by now; PW_KEEP_TMP=1 keeps them for a post-mortem
    if not os.environ.get("PW_KEEP_TMP"):
        for d in _made_dirs:
            shutil.rmtree(d, ignore_errors=True)


class ControlPlane:
    """pathway-control with a config of its own; stop() ends it, restart() starts it again on the
    same database and port. Its temporary directory goes when the test script exits."""

    def __init__(self, max_body="64KiB", heartbeat="30s", max_wait="5m", seed=None, directory=None, extra_config="",
                 extra_tokens=(), nofile=None):
        """extra_config: more top-level lines of its config; extra_tokens: (name, token, ids or None)
        of more dataplane tokens; nofile: the process's RLIMIT_NOFILE."""
        if directory is None:
            directory = tempfile.mkdtemp(prefix="pw-cp-")
            _made_dirs.append(directory)
        self.dir = directory
        self.port = pwtest.free_port()
        self.db = os.path.join(self.dir, "cp.db")
        pwtest.write_file(self.dir, "admin.token", ADMIN + "\n")
        pwtest.write_file(self.dir, "viewer.token", VIEWER + "\n")
        pwtest.write_file(self.dir, "dataplane.token", DATAPLANE + "\n")
        more = ""
        for name, token, ids in extra_tokens:
            pwtest.write_file(self.dir, name + ".token", token + "\n")
            more += f"  - {{name: {name}, role: dataplane, file: {name}.token"
            more += (", ids: " + json.dumps(list(ids)) + "}\n") if ids is not None else "}\n"
        self.nofile = nofile
        self.config = pwtest.write_file(
            self.dir,
            "controlplane.yaml",
            f"listen: 127.0.0.1:{self.port}\n"
            f"database: cp.db\n"
            f"max_body: {max_body}\n"
            f"heartbeat_timeout: {heartbeat}\n"
            f"max_wait: {max_wait}\n"
            f"log_level: info\n"
            + extra_config
            + "tokens:\n"
            "  - {name: ops, role: admin, file: admin.token}\n"
            "  - {name: grafana, role: viewer, file: viewer.token}\n"
            "  - {name: fleet, role: dataplane, file: dataplane.token}\n" + more,
        )
        self.seed = seed
        self.proc = None
        self.start()

    def start(self, extra_args=()):
        args = [pwtest.binary("pathway-control"), "-c", self.config] + list(extra_args)
        if self.seed:
            args += ["--seed", self.seed]
        if self.nofile is not None:
            # exec keeps the PID: stop() and /proc/<pid> see pathway-control itself
            args = ["/bin/sh", "-c", f'ulimit -n {int(self.nofile)} && exec "$@"', "sh"] + args
        # a cwd elsewhere proves relative paths are taken from the config file's directory
        self.proc = pwtest.Proc(args, name="pathway-control", cwd="/")
        pwtest.wait_port(self.port)

    def stop(self):
        return self.proc.stop()

    def kill9(self):
        return self.proc.kill9()

    def restart(self):
        self.stop()
        self.start()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def request(self, method, path, body=None, token=ADMIN, headers=None, ctype=None, timeout=10.0):
        """Returns (status, headers, body bytes)."""
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", ctype or "application/json")
        elif body is not None and ctype is not None:
            h["Content-Type"] = ctype
        return pwtest.request(self.port, method, path, body, h, timeout)

    def call(self, method, path, body=None, token=ADMIN, headers=None, ctype=None, timeout=10.0):
        """Returns (status, headers, parsed JSON or None). Asserts error bodies are JSON errors."""
        status, hdrs, data = self.request(method, path, body, token, headers, ctype, timeout)
        parsed = None
        if data and hdrs.get("content-type", "").startswith("application/json"):
            parsed = json.loads(data)
        if status >= 400:
            assert hdrs.get("content-type", "").startswith("application/json"), (status, hdrs, data)
            assert isinstance(parsed, dict) and isinstance(parsed.get("error"), str), (status, data)
        return status, hdrs, parsed


def expect(got, status):
    """Asserts a call's status, showing its body when it differs."""
    assert got[0] == status, f"expected {status}, got {got[0]}: {got[2]}"
    return got
