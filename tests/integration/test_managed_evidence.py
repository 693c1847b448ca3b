"""A managed dataplane's evidence for safe rollouts (issue 14): the labels it reports (heartbeats and
long polls) and the per-service traffic figures its heartbeats carry, counted since the fleet
version in force came into force. A small HTTP server posing as the control plane records exactly
what the dataplane sends; a real pathway-control shows the labels in GET /v1/dataplanes."""

import json
import os
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cp_util  # noqa: E402
import dp_util  # noqa: E402
import pwtest  # noqa: E402
from pwtest import main, test  # noqa: E402

BUCKETS = 14  # the duration buckets of pathway_request_duration_seconds


class FakeControlPlane:
    """Serves versions to one dataplane's long poll and records its polls and status reports."""

    def __init__(self, document):
        self.lock = threading.Condition()
        self.version = 1
        self.document = document
        self.polls = []    # query dicts of every long poll
        self.reports = []  # status bodies, oldest first
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body=None):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass  # the dataplane stopped while its long poll waited

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                with fake.lock:
                    fake.polls.append(q)
                    deadline = time.time() + 2
                    while fake.version <= int(q.get("version", "0")) and time.time() < deadline:
                        fake.lock.wait(0.05)
                    version, doc = fake.version, fake.document
                if version > int(q.get("version", "0")):
                    self.reply(200, {"version": version, "document": doc})
                else:
                    self.reply(304)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.reports.append(body)
                    fake.lock.notify_all()
                self.reply(200, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def push(self, document):
        with self.lock:
            self.version += 1
            self.document = document
            self.lock.notify_all()
        return self.version

    def wait_report(self, pred, what, timeout=10.0):
        """The first report from now on for which pred holds."""
        deadline = time.time() + timeout
        with self.lock:
            seen = 0
            while True:
                for r in self.reports[seen:]:
                    if pred(r):
                        return r
                seen = len(self.reports)
                left = deadline - time.time()
                if left <= 0:
                    last = self.reports[-1] if self.reports else None
                    raise AssertionError(f"no report {what} within {timeout}s; the last: {json.dumps(last)[:1500]}")
                self.lock.wait(left)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def fleet_doc(ports, level="info"):
    return {
        "log": {"level": level},
        "services": [{"id": sid, "endpoints": [{"url": f"http://127.0.0.1:{port}"}]} for sid, port in ports.items()],
    }


def managed_extra(url, directory, token_file=None, labels=None):
    text = (f"control_plane:\n"
            f"  url: {url}\n"
            f"  id: dp-1\n"
            f"  state_dir: {os.path.join(directory, 'state')}\n"
            f"  heartbeat_interval: 200ms\n")
    if token_file:
        text += f"  token_file: {token_file}\n"
    if labels:
        text += "  labels:\n" + "".join(f"    {k}: {json.dumps(v)}\n" for k, v in labels.items())
    return text


def traffic_matches(expected, version):
    """A predicate on reports: traffic of `version` with these {service: (requests, errors)}."""
    def pred(r):
        t = r.get("traffic")
        if not t or t.get("version") != version:
            return False
        svcs = t.get("services", {})
        return all(svc in svcs and (svcs[svc]["requests"], svcs[svc]["errors"]) == want for svc, want in expected.items())
    return pred


def send(pw, service, n):
    for _ in range(n):
        status, _, _ = pw.rpc(service)
        assert status is not None


@test
def heartbeats_carry_labels_and_traffic_since_the_version():
    mocks = {
        "good": dp_util.start_mock(),
        # every answer a JSON-RPC internal error (-32603: server_error) in a 200
        "rpcerr": dp_util.start_mock("--error-rate", "1", "--error-code", "-32603"),
        "http5": dp_util.start_mock("--status", "503"),
        "limited": dp_util.start_mock("--status", "429"),
        # a JSON-RPC error of the client's making (invalid params): not the service's failure
        "clienterr": dp_util.start_mock("--error-rate", "1", "--error-code", "-32602"),
    }
    ports = {sid: port for sid, (_, port) in mocks.items()}
    cp = FakeControlPlane(fleet_doc(ports))
    directory = tempfile.mkdtemp(prefix="pw-evidence-")
    labels = {"canary": "true", "region": "eu", "hostname": "edge-7"}
    try:
        pw = dp_util.Pathway([("good", [f"http://127.0.0.1:{ports['good']}"], "")],
                             extra=managed_extra(f"http://127.0.0.1:{cp.port}", directory, labels=labels), threads=2,
                             tmpdir=directory)
        cp.wait_report(lambda r: r.get("version") == 1 and r.get("applied"), "ACKing version 1")

        # labels: control_plane.labels, whose hostname overrides the machine's, in heartbeats and polls
        r = cp.wait_report(lambda r: "labels" in r, "with labels")
        assert r["labels"] == labels, r["labels"]
        with cp.lock:
            polled = [json.loads(q["labels"]) for q in cp.polls if "labels" in q]
        assert polled and polled[-1] == labels, cp.polls[-3:]

        sent = {"good": 10, "rpcerr": 6, "http5": 4, "limited": 3, "clienterr": 2}
        for svc, n in sent.items():
            send(pw, svc, n)
        want = {"good": (10, 0), "rpcerr": (6, 6), "http5": (4, 4), "limited": (3, 3), "clienterr": (2, 0)}
        r = cp.wait_report(traffic_matches(want, 1), f"with version 1's traffic {want}")
        for svc, n in sent.items():
            b = r["traffic"]["services"][svc]["latency_ms_buckets"]
            assert len(b) == BUCKETS and all(isinstance(x, int) and x >= 0 for x in b), b
            assert sum(b) == n, (svc, b)
        # what the mock saw is what was counted: rpcerr's errors were the upstream's
        assert dp_util.mock_stats(ports["rpcerr"])["errors"] == 6

        # cumulative: more requests add to the same version's figures
        send(pw, "good", 5)
        send(pw, "http5", 1)
        cp.wait_report(traffic_matches({"good": (15, 0), "http5": (5, 5)}, 1), "with the figures grown")

        # a new version: the figures start again at 0 for it, for every service
        v2 = cp.push(fleet_doc(ports, level="debug"))
        cp.wait_report(lambda r: r.get("version") == v2 and r.get("applied"), "ACKing version 2")
        zero = {svc: (0, 0) for svc in sent}
        r = cp.wait_report(traffic_matches(zero, v2), "with version 2's traffic at zero")
        assert all(sum(s["latency_ms_buckets"]) == 0 for s in r["traffic"]["services"].values()), r["traffic"]
        send(pw, "good", 2)
        send(pw, "rpcerr", 1)
        cp.wait_report(traffic_matches({"good": (2, 0), "rpcerr": (1, 1), "http5": (0, 0)}, v2), "counting version 2")
        assert pw.proc.alive()
    finally:
        cp.close()


@test
def a_rejected_version_does_not_restart_the_figures():
    _, port = dp_util.start_mock()
    cp = FakeControlPlane(fleet_doc({"eth": port}))
    directory = tempfile.mkdtemp(prefix="pw-evidence-")
    try:
        pw = dp_util.Pathway([("eth", [f"http://127.0.0.1:{port}"], "")],
                             extra=managed_extra(f"http://127.0.0.1:{cp.port}", directory), threads=1, tmpdir=directory)
        cp.wait_report(lambda r: r.get("version") == 1 and r.get("applied"), "ACKing version 1")
        send(pw, "eth", 4)
        cp.wait_report(traffic_matches({"eth": (4, 0)}, 1), "with 4 requests")
        bad = fleet_doc({"eth": port})
        bad["services"][0]["endpoints"][0]["tls"] = {"ca_file": "/nonexistent/ca.pem"}
        bad["services"][0]["endpoints"][0]["url"] = f"https://127.0.0.1:{port}"
        v2 = cp.push(bad)
        cp.wait_report(lambda r: r.get("version") == v2 and r.get("applied") is False, "NACKing version 2")
        send(pw, "eth", 1)
        # still version 1's figures, grown
        cp.wait_report(traffic_matches({"eth": (5, 0)}, 1), "version 1's figures after the NACK")
    finally:
        cp.close()


@test
def a_real_control_plane_shows_the_labels():
    """Against pathway-control: the labels reach GET /v1/dataplanes, and the dataplane applies and
    heartbeats whether or not that control plane takes labels at poll time and traffic figures."""
    _, port = dp_util.start_mock()
    directory = tempfile.mkdtemp(prefix="pw-evidence-")
    seed = pwtest.write_file(directory, "seed.json", json.dumps(fleet_doc({"eth": port})))
    cp = cp_util.ControlPlane(seed=seed)
    labels = {"canary": "true", "zone": "b"}
    pw = dp_util.Pathway([("eth", [f"http://127.0.0.1:{port}"], "")],
                         extra=managed_extra(f"http://127.0.0.1:{cp.port}", directory,
                                             os.path.join(cp.dir, "dataplane.token"), labels),
                         threads=1, tmpdir=directory)

    def entry():
        status, _, body = cp.call("GET", "/v1/dataplanes")
        assert status == 200, body
        return {d["id"]: d for d in body["dataplanes"]}.get("dp-1", {})

    dp_util.wait_for(lambda: entry().get("applied_version") == 1 and (entry().get("labels") or {}).get("canary") == "true",
                     10, "dp-1 to apply version 1 and show its labels")
    shown = entry()["labels"]
    assert shown["zone"] == "b" and shown["hostname"], shown
    assert pw.rpc("eth")[0] == 200
    # heartbeats go on being taken (each one refreshes last_seen)
    first = entry()["last_seen"]
    dp_util.wait_for(lambda: entry()["last_seen"] != first, 5, "another heartbeat to be taken")
    v2 = cp_util.expect(cp.call("PUT", "/v1/config", fleet_doc({"eth": port}, level="warn")), 201)[2]["version"]
    dp_util.wait_for(lambda: entry().get("applied_version") == v2, 10, "dp-1 to apply version 2")


if __name__ == "__main__":
    main()
