"""The web console (issue 15) in a real browser: headless Chromium driven by playwright-core (pinned in
ui/package-lock.json, installed into the build directory by the build) against a real
pathway-control, two real managed pathway dataplanes and the mock upstream, all on 127.0.0.1.
tests/browser/console.mjs drives the pages; this script sets up each scene through the API and
checks through the API what the console did:

- a wrong token gets a clear message; a viewer gets no write buttons; an admin sees the three
  versions and v3's diff (services.eth.pool.max_idle_per_host: 25 -> 5);
- "Roll back to this version" in the console makes a new version of kind rollback, and "Tag" a tag;
- the timeline counts the dataplanes running and rejecting each version, and shows its tags;
- a dataplane that NACKs a version it cannot apply stands out in Fleet with its error;
- the traffic chart moves after a bounded load through the dataplanes;
- an admin pauses a live rollout from the console (a viewer gets no rollout buttons);
- the versions' kind filter and the events' action filter;
- /ui answers carry the security headers, and no page logs a console error or a CSP violation.

Screenshots of the main pages (1280x800 and 390 px wide) go to <build>/test-output/console/.
Skipped (exit 77) only when chromium or node (20 or later) is missing; PW_CHROMIUM names another
Chromium binary than the one on PATH."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cp_util  # noqa: E402
import dp_util  # noqa: E402
import pwtest  # noqa: E402
from pwtest import main, test  # noqa: E402

CHROMIUM = os.environ.get("PW_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
NODE = shutil.which("node")
NODE_MODULES = os.path.join(pwtest.BUILD_DIR, "ui-npm", "node_modules")
SCRIPT = os.path.join(pwtest.SOURCE_DIR, "tests", "browser", "console.mjs")
OUT = os.path.join(pwtest.BUILD_DIR, "test-output", "console")
REQUESTS = 300  # the bounded load of the traffic scene
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def document(mport, idle=None, level="info", bad_ca=None):
    # header values that plain YAML would read as something else: the console's YAML must quote them
    headers = {"X-Bool": "yes", "X-Null": "null", "X-Hex": "0x1F", "X-Exp": "1e3", "X-Tilde": "~", "X-Colon": "a: b #c",
               "X-Flow": "[1, {x: 2}]", "X-Quotes": "'\"", "X-Dash": "- item", "X-Unicode": "caf\u00e9 \u2192"}
    svc = {"id": "eth", "endpoints": [{"url": f"http://127.0.0.1:{mport}", "headers": headers}]}
    if idle is not None:
        svc["pool"] = {"max_idle_per_host": idle}
    doc = {"log": {"level": level}, "services": [svc]}
    if bad_ca:
        # valid for the control plane, which cannot see the dataplanes' files; no dataplane can load it
        doc["services"].append({"id": "secure", "endpoints": [{"url": "https://127.0.0.1:9/", "tls": {"ca_file": bad_ca}}]})
    return doc


class Scene:
    """pathway-control seeded with v1, two managed dataplanes (labelled), one mock upstream."""

    def __init__(self):
        self.mock, self.mport = dp_util.start_mock()
        self.dir = tempfile.mkdtemp(prefix="pw-console-")
        seed = pwtest.write_file(self.dir, "seed.json", json.dumps(document(self.mport)))
        self.cp = cp_util.ControlPlane(seed=seed)
        self.dps = [self.start_dp(i) for i in range(2)]
        for i in range(2):
            self.wait_dp(i, lambda d: d.get("applied_version") == 1, "to apply v1")

    def start_dp(self, i):
        extra = (f"control_plane:\n"
                 f"  url: http://127.0.0.1:{self.cp.port}\n"
                 f"  token_file: {os.path.join(self.cp.dir, 'dataplane.token')}\n"
                 f"  id: edge-{i}\n"
                 f"  state_dir: {os.path.join(self.dir, f'state-{i}')}\n"
                 f"  heartbeat_interval: 300ms\n"
                 f"  labels:\n    region: {'eu' if i == 0 else 'us'}\n    tier: {'canary' if i == 0 else 'main'}\n")
        return dp_util.Pathway([("eth", [f"http://127.0.0.1:{self.mport}"], "")], extra=extra, threads=1,
                               tmpdir=tempfile.mkdtemp(prefix=f"pw-dp{i}-", dir=self.dir))

    def dataplanes(self):
        status, _, body = self.cp.call("GET", "/v1/dataplanes")
        assert status == 200, body
        return {d["id"]: d for d in body["dataplanes"]}

    def wait_dp(self, i, pred, what):
        return dp_util.wait_for(lambda: pred(self.dataplanes().get(f"edge-{i}", {})), 10.0, f"edge-{i} {what}")

    def put(self, doc, message):
        got = cp_util.expect(self.cp.call("PUT", "/v1/config", doc, headers={"Pathway-Message": message}), 201)
        return got[2]["version"]

    def browser(self, phase, timeout):
        cfg = {"phase": phase, "base": f"http://127.0.0.1:{self.cp.port}", "admin": cp_util.ADMIN, "viewer": cp_util.VIEWER,
               "out": OUT, "chromium": CHROMIUM, "node_modules": NODE_MODULES, "relays": [d.port for d in self.dps],
               "requests": REQUESTS}
        try:
            r = subprocess.run([NODE, SCRIPT, json.dumps(cfg)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"the browser's {phase} phase took over {timeout}s:\n{e.stdout}\n{e.stderr}")
        assert r.returncode == 0, f"browser, {phase} phase: {r.stderr.strip()}\n{r.stdout}"
        found = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"browser, {phase} phase: seconds per step {found['timings']}", flush=True)
        return found


def check_headers(cp):
    """The security headers on every /ui answer; the redirect, ETags and 304, the 404."""
    for path, want in (("/ui", 301), ("/ui/", 200), ("/ui/app.js", 200), ("/ui/LICENSES.txt", 200), ("/ui/nope.js", 404)):
        status, h, body = pwtest.request(cp.port, "GET", path)
        assert status == want, (path, status, body)
        assert h.get("content-security-policy") == CSP, (path, h)
        assert h.get("x-content-type-options") == "nosniff", (path, h)
        assert h.get("x-frame-options") == "DENY" and h.get("referrer-policy") == "no-referrer", (path, h)
    status, h, _ = pwtest.request(cp.port, "GET", "/ui")
    assert h["location"] == "/ui/", h
    status, h, body = pwtest.request(cp.port, "GET", "/ui/")
    assert h["content-type"].startswith("text/html") and h["cache-control"] == "no-cache", h
    assert b'<script type="module" src="app.js">' in body and b"<script>" not in body and b"style=" not in body
    status, h2, _ = pwtest.request(cp.port, "GET", "/ui/", headers={"If-None-Match": h["etag"]})
    assert status == 304, status
    status, h, body = pwtest.request(cp.port, "GET", "/ui/app.js")
    assert h["content-type"].startswith("text/javascript") and "max-age" in h["cache-control"], h
    status, _, lic = pwtest.request(cp.port, "GET", "/ui/LICENSES.txt")
    assert b"htm" in lic and b"uplot" in lic and b"Preact" in lic and b"MIT" in lic, lic[:300]
    status, _, body = pwtest.request(cp.port, "GET", "/ui/nope.js")
    assert json.loads(body)["error"] == "no such console asset: nope.js", body


@test
def console_in_a_browser():
    start = time.time()
    s = Scene()
    check_headers(s.cp)
    # three versions: v3's change against its parent is the one the console must show
    assert s.put(document(s.mport, idle=25, level="debug"), "debug logs, idle pool spelled out") == 2
    assert s.put(document(s.mport, idle=5, level="debug"), "fewer idle connections") == 3
    for i in range(2):
        s.wait_dp(i, lambda d: d.get("applied_version") == 3 and d.get("state") == "synced", "to run v3")

    got = s.browser("signin", timeout=60)
    assert got["versions"] == [3, 2, 1], got
    assert got["diff"] == ["services.eth.pool.max_idle_per_host: 25 \u2192 5"], got
    # the document the console shows as YAML is the stored one: read back, it has the same hash
    status, _, v3 = s.cp.call("GET", "/v1/versions/3")
    status, _, checked = s.cp.call("POST", "/v1/config/validate", got["yaml_v3"], ctype="application/yaml")
    assert status == 200 and checked["hash"] == v3["hash"], (status, checked, got["yaml_v3"])
    # the rollback clicked in the console made v4, of kind rollback, restoring v2
    status, _, v4 = s.cp.call("GET", "/v1/versions/4")
    assert status == 200, v4
    assert v4["kind"] == "rollback" and v4["source_version"] == 2 and v4["author"] == "ops", v4
    assert v4["message"] == "console: back to 25 idle", v4
    assert v4["document"]["services"][0]["pool"]["max_idle_per_host"] == 25, v4["document"]["services"][0]
    # the tag set in the console
    status, _, tag = s.cp.call("GET", "/v1/tags/stable")
    assert status == 200 and tag["version"] == 4 and tag["message"] == "known good" and tag["author"] == "ops", tag
    for i in range(2):
        s.wait_dp(i, lambda d: d.get("applied_version") == 4, "to run v4")

    # a version no dataplane can load: both NACK it, and Fleet must flag them
    bad = s.put(document(s.mport, idle=5, level="debug", bad_ca="/nonexistent/console-ca.pem"), "a CA that is nowhere")
    assert bad == 5
    for i in range(2):
        s.wait_dp(i, lambda d: d.get("rejected_version") == bad and d.get("state") == "rejected", "to reject v5")

    got = s.browser("fleet", timeout=60)
    assert {r["id"]: r["state"] for r in got["fleet"]} == {"edge-0": "rejected", "edge-1": "rejected"}, got
    assert got["traffic"]["after"] >= got["traffic"]["before"] + REQUESTS and got["traffic"]["max_rps"] > 0, got
    # what the console counted went through the dataplanes to the upstream
    assert dp_util.mock_stats(s.mport)["requests"] >= REQUESTS

    # a live rollout (canary: edge-0 by its label; a gate that never has enough requests to pass,
    # so it stays at step 1) that the admin pauses from the console
    doc = document(s.mport, idle=10, level="debug")
    doc["rollout"] = {"canary": {"labels": {"tier": "canary"}}, "steps": [{"percent": 50, "hold": "10m"}, {"percent": 100, "hold": "1s"}],
                      "gate": {"interval": "1s", "min_requests": 1000000}}
    got_put = cp_util.expect(s.cp.call("PUT", "/v1/config", doc, headers={"Pathway-Message": "fewer idle, canary first"}), 201)[2]
    rid = got_put["rollout"]["id"]
    got = s.browser("rollout", timeout=max(10, 115 - (time.time() - start)))
    status, _, ro = s.cp.call("GET", f"/v1/rollouts/{rid}")
    assert status == 200 and ro["state"] == "paused", ro
    status, _, ev = s.cp.call("GET", "/v1/events?action=rollout_pause")
    assert [e["actor"] for e in ev["events"]] == ["ops"], ev
    for name in ("versions", "version", "fleet", "traffic", "rollouts", "events"):
        for tag in ("wide", "phone"):
            assert os.path.getsize(os.path.join(OUT, f"{name}-{tag}.png")) > 5000, (name, tag)
    took = time.time() - start
    assert took < 120, f"the console test took {took:.0f}s"


if __name__ == "__main__":
    missing = [what for what, ok in (("chromium", os.path.exists(CHROMIUM)), ("node", NODE is not None)) if not ok]
    if missing:
        print(f"SKIP: {' and '.join(missing)} not installed (scripts/install-deps.sh installs what is missing)")
        sys.exit(77)
    node_version = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip()
    if int(node_version.lstrip("v").split(".")[0] or 0) < 20:
        print(f"SKIP: node {node_version} is too old for playwright-core (it needs node 20 or later)")
        sys.exit(77)
    if not os.path.isdir(os.path.join(NODE_MODULES, "playwright-core")):
        print(f"FAIL: {NODE_MODULES}/playwright-core is missing: the build installs it (npm ci of ui/package-lock.json)")
        sys.exit(1)
    main()
