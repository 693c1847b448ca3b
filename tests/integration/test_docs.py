"""The operator's docs stay true:

- no doc (docs/, README.md, examples/) cites a file outside the repository (a DESIGN or STYLE
  file, ../shared), and every relative link points at a file of the repository (and, with
  #anchor, at a heading of it);
- docs/managed.md's quick start runs as written from a fresh checkout: its ```sh block under
  "## Quick start", with the examples' ports swapped for free ones (in the commands and in a copy of
  examples/), bounded in time, and every process it started stopped after;
- docs/deploy.md's config snippets work: the control plane's and a dataplane's /etc/pathway files
  run as a small fleet, and the nginx and HAProxy snippets terminate TLS in front of that control
  plane (each run for real on loopback, with a throwaway certificate).

Standard library only."""

import glob
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pwtest
from pwtest import test

SRC = pwtest.SOURCE_DIR
def tmpdir():
    return pwtest.tmpdir("pw-docs-")


def doc_files():
    """Every file the check covers: docs/**, README.md, examples/** (text files only)."""
    files = [os.path.join(SRC, "README.md")]
    for top in ("docs", "examples"):
        for root, dirs, names in os.walk(os.path.join(SRC, top)):
            dirs[:] = [d for d in dirs if d != "state"]
            for n in names:
                if n.endswith((".db", ".db-wal", ".db-shm")):
                    continue
                files.append(os.path.join(root, n))
    return files


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


OUTSIDE = [
    (re.compile(r"\bDESIGN\b"), "cites DESIGN, a file outside the repository"),
    (re.compile(r"\bSTYLE\.md\b"), "cites STYLE.md, a file outside the repository"),
    (re.compile(r"\.\./shared\b|/work/shared\b"), "points into ../shared, outside the repository"),
]


def outside_citations(text):
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        for rx, why in OUTSIDE:
            if rx.search(line):
                out.append(f"{n}: {why}: {line.strip()[:120]}")
    return out


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    h = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", heading.strip().lower())
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def anchors(md_text):
    seen, out = {}, set()
    in_code = False
    for line in md_text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        m = None if in_code else re.match(r"#{1,6}\s+(.*)", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out


def broken_links(path, text):
    """Relative markdown links of a .md file whose target (or #anchor) does not exist."""
    out = []
    prose = re.sub(r"```.*?```", "", text, flags=re.S)  # links in code blocks are not links
    for m in re.finditer(r"\[[^\]]*\]\(([^)\s]+)\)", prose):
        target = m.group(1)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:, file:
            continue
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not (dest + os.sep).startswith(os.path.normpath(SRC) + os.sep) and dest != os.path.normpath(SRC):
            out.append(f"{target}: outside the repository")
            continue
        if not os.path.exists(dest):
            out.append(f"{target}: no such file in the repository")
            continue
        if anchor and dest.endswith(".md") and anchor not in anchors(read(dest)):
            out.append(f"{target}: no heading #{anchor} in {os.path.relpath(dest, SRC)}")
    return out


# Citations in docs other branches of issue 9 own, to be rewritten as links into docs/architecture.md
# when they are merged (file, the text cited). Each entry must still be there: remove it with the fix.
PENDING_AT_MERGE = []


@test
def no_doc_cites_files_outside_the_repository():
    problems, pending_seen = [], set()
    for f in doc_files():
        rel = os.path.relpath(f, SRC)
        for p in outside_citations(read(f)):
            pend = [(pf, t) for pf, t in PENDING_AT_MERGE if pf == rel and t in p]
            if pend:
                pending_seen.update(pend)
                continue
            problems.append(f"{rel}:{p}")
    assert not problems, "docs citing files outside the repository:\n" + "\n".join(problems)
    stale = [e for e in PENDING_AT_MERGE if e not in pending_seen]
    assert not stale, f"fixed, so take them out of PENDING_AT_MERGE: {stale}"
    if PENDING_AT_MERGE:
        print(f"NOTE: {len(PENDING_AT_MERGE)} citations of DESIGN pending at merge: {PENDING_AT_MERGE}")


@test
def relative_links_resolve():
    problems = []
    for f in doc_files():
        if f.endswith(".md"):
            problems += [f"{os.path.relpath(f, SRC)}: {p}" for p in broken_links(f, read(f))]
    assert not problems, "broken relative links:\n" + "\n".join(problems)


@test
def the_checks_catch_what_they_should():
    # the two checks above, on made-up text, so that a check that cannot fail does not pass silently
    assert outside_citations("routing (DESIGN §3)") and outside_citations("see ../shared/x")
    assert outside_citations("as STYLE.md says") and not outside_citations("the design of the pool")
    d = tmpdir()
    md = pwtest.write_file(d, "a.md", "# Top\n## Two words\n[ok](a.md#two-words) [bad](gone.md) [anchor](a.md#nope)\n"
                           "```\n[in code](ignored.md)\n```\n[web](https://example.com/x)\n")
    global SRC
    saved, SRC = SRC, d
    try:
        got = broken_links(md, read(md))
    finally:
        SRC = saved
    assert got == ["gone.md: no such file in the repository", "a.md#nope: no heading #nope in a.md"], got


# ---- docs/managed.md's quick start -----------------------------------------------------------

QUICK_START_PORTS = [8545, 8547, 7070, 3070, 9902]  # mocks, control plane, dataplane, its admin


def section_block(md, heading, lang="sh"):
    """The first ```lang block under `## heading` (before the next ## heading)."""
    m = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", md, re.M | re.S)
    assert m, f"no '## {heading}' section"
    b = re.search(rf"^```{lang}\n(.*?)^```", m.group(1), re.M | re.S)
    assert b, f"no ```{lang} block under '## {heading}'"
    return b.group(1)


def swap_ports(text, ports):
    for old, new in ports.items():
        text = re.sub(rf"(?<![0-9]){old}(?![0-9])", str(new), text)
    return text


def stop_group(p, pgid):
    """SIGTERM the whole process group of a `bash` run (its & jobs included), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
    if p.poll() is None:
        p.wait()


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@test
def managed_quick_start_runs_as_written():
    block = section_block(read(os.path.join(SRC, "docs", "managed.md")), "Quick start")
    lines = block.splitlines()
    # the first step builds; this test runs on a build already made (ctest), so that one line is skipped
    assert lines[0].split("#")[0].strip() == "make build", lines[0]
    ports = {old: pwtest.free_port() for old in QUICK_START_PORTS}
    script = swap_ports("\n".join(lines[1:]) + "\n", ports)
    # a fresh checkout's layout: examples/ (a copy, on the swapped ports) and the build
    root = tmpdir()
    shutil.copytree(os.path.join(SRC, "examples"), os.path.join(root, "examples"),
                    ignore=shutil.ignore_patterns("state", "*.db", "*.db-wal", "*.db-shm"))
    for f in glob.glob(os.path.join(root, "examples", "*.yaml")):
        with open(f) as fh:
            text = fh.read()
        with open(f, "w") as fh:
            fh.write(swap_ports(text, ports))
    os.symlink(pwtest.BUILD_DIR, os.path.join(root, "build"))
    env = dict(os.environ)
    for k in ("PATHWAY_URL", "PATHWAY_TOKEN", "XDG_CONFIG_HOME"):
        env.pop(k, None)
    env["HOME"] = root  # no pathwayctl settings file of the user running the tests
    p = subprocess.Popen(["bash", "-e", "-c", script], cwd=root, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    pgid = p.pid
    try:
        out, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        stop_group(p, pgid)
        out, _ = p.communicate()
        raise AssertionError(f"the quick start did not finish within 60 s:\n{out[-4000:]}")
    finally:
        lingering = group_alive(pgid)
        stop_group(p, pgid)
    assert p.returncode == 0, f"the quick start failed (exit {p.returncode}):\n{script}\n--- output ---\n{out[-6000:]}"
    assert not lingering, f"the quick start's last step left processes running:\n{out[-2000:]}"
    listing = next((l for l in out.splitlines() if l.startswith('{"active_version"')), None)
    assert listing, out
    dps = json.loads(listing)["dataplanes"]
    assert [(d["id"], d["state"], d["applied_version"]) for d in dps] == [("dp-1", "synced", 1)], listing
    assert re.search(r'^\{"jsonrpc":"2.0","id":1,"result":"0x[0-9a-f]+"\}$', out, re.M), out
    assert "created version 2" in out and "created version 3 (rollback to 1" in out, out
    config = next((l for l in out.splitlines() if l.startswith('{"document"')), None)
    assert config and json.loads(config)["document"]["limiter"]["max_concurrent"] == 50, out
    assert re.search(r"^dp-1\s+synced\s+3\s", out, re.M), out


# ---- README: its first commands -------------------------------------------------------------

RUN_PORTS = [8545, 8547, 3069, 9901]  # make run: the mocks, examples/standalone.yaml's listener and admin


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not a listener
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
            return True
        except OSError:
            return False


@test
def readme_first_commands_are_make_run_and_make_test_and_make_run_works():
    readme = read(os.path.join(SRC, "README.md"))
    first = re.search(r"^```sh\n(.*?)^```", readme, re.M | re.S)
    assert first and readme.index(first.group(0)) < 1500, "the README does not open with its commands"
    cmds = [l.split("#")[0].strip() for l in first.group(1).splitlines() if l.split("#")[0].strip()]
    assert cmds == ["make run", "make test"], cmds
    busy = [p for p in RUN_PORTS if not port_free(p)]
    if busy:
        print(f"NOTE: ports {busy} are in use on this machine (another make run?): make run itself was not started")
        return
    # `make run` as the README says: it prints a curl command that works, and Ctrl-C stops everything
    env = pwtest.make_env()
    p = subprocess.Popen(["make", "-s", "-C", SRC, "run", f"BUILD={pwtest.BUILD_DIR}"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    lines = []
    try:
        deadline = time.time() + 120
        for line in p.stdout:
            lines.append(line)
            if line.strip().startswith("curl -s http://") and "/stats" in line or time.time() > deadline:
                break
        out = "".join(lines)
        m = re.search(r"^\s*(curl -s -X POST .*?/v1/eth)\s*$", out.replace("\\\n", " "), re.M)
        assert m, f"make run printed no curl command:\n{out[-3000:]}"
        deadline = time.time() + 10
        while True:
            r = subprocess.run(["bash", "-c", m.group(1)], capture_output=True, text=True, timeout=10)
            if '"result"' in r.stdout or time.time() > deadline:
                break
            time.sleep(0.1)
        assert re.match(r'\{"jsonrpc":"2.0","id":1,"result":"0x[0-9a-f]+"\}', r.stdout), (m.group(1), r.stdout, r.stderr)
        os.killpg(p.pid, signal.SIGINT)  # Ctrl-C
        p.wait(20)
        time.sleep(0.3)
        still = [port for port in RUN_PORTS if not port_free(port)]
        assert not still, f"after Ctrl-C something still listens on {still}"
        assert not group_alive(p.pid), "after Ctrl-C a process of make run is still there"
    finally:
        stop_group(p, p.pid)


# ---- docs/deploy.md's snippets ---------------------------------------------------------------


def snippet(md, first_line):
    """The fenced block whose first line is `first_line` (the file it shows)."""
    m = re.search(rf"^```\w*\n{re.escape(first_line)}\n(.*?)^```", md, re.M | re.S)
    assert m, f"no block starting with '{first_line}' in docs/deploy.md"
    return m.group(1)


def self_signed(d, name):
    crt, key = os.path.join(d, "cp.crt"), os.path.join(d, "cp.key")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                        "-addext", f"subjectAltName=DNS:{name}", "-keyout", key, "-out", crt],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    pem = os.path.join(d, "cp.pem")
    with open(pem, "w") as f:
        f.write(read(crt) + read(key))
    return crt, key, pem


def https_get(port, path, cafile, token=None):
    """GET over TLS to 127.0.0.1:port, verifying the certificate for cp.example.internal."""
    ctx = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.sock = ctx.wrap_socket(raw, server_hostname="cp.example.internal")
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def wait_https(port, cafile, timeout=10):
    deadline = time.time() + timeout
    while True:
        try:
            return https_get(port, "/healthz", cafile)
        except (OSError, ssl.SSLError):
            if time.time() > deadline:
                raise
            time.sleep(0.1)


@test
def deploy_snippets_run_as_a_fleet_behind_tls():
    md = read(os.path.join(SRC, "docs", "deploy.md"))
    d = tmpdir()
    etc, var = os.path.join(d, "etc") + "/", os.path.join(d, "var") + "/"
    os.makedirs(etc + "tokens")
    os.makedirs(var + "pathway")
    os.makedirs(var + "pathway-control")
    tokens = {}
    for t in ("admin", "viewer", "dp-eu-1", "dp-eu-2"):
        tokens[t] = os.urandom(16).hex()
        pwtest.write_file(etc + "tokens", f"{t}.token", tokens[t] + "\n")
    pwtest.write_file(etc, "dataplane.token", tokens["dp-eu-1"] + "\n")

    # the control plane, from /etc/pathway/controlplane.yaml as the doc writes it
    cport = pwtest.free_port()
    cp_yaml = snippet(md, "# /etc/pathway/controlplane.yaml")
    cp_yaml = cp_yaml.replace("/etc/pathway/", etc).replace("/var/lib/pathway-control/", var + "pathway-control/")
    cp_yaml = swap_ports(cp_yaml, {7070: cport})
    cp_conf = pwtest.write_file(etc, "controlplane.yaml", cp_yaml)
    cp = pwtest.Proc([pwtest.binary("pathway-control"), "-c", cp_conf, "--seed",
                      os.path.join(SRC, "examples", "fleet.yaml")], name="pathway-control")
    pwtest.wait_port(cport)
    assert os.path.exists(var + "pathway-control/pathway.db"), "the database is not where the doc puts it"

    # TLS in front of it: the nginx snippet, then the HAProxy one, each run for real
    crt, key, pem = self_signed(d, "cp.example.internal")
    nport, hport = pwtest.free_port(), pwtest.free_port()
    if shutil.which("nginx"):
        conf = snippet(md, "# /etc/nginx/conf.d/pathway-control.conf")
        conf = conf.replace("/etc/ssl/pathway/cp.crt", crt).replace("/etc/ssl/pathway/cp.key", key)
        conf = swap_ports(conf, {7443: nport, 7070: cport})
        ndir = os.path.join(d, "nginx")
        os.makedirs(ndir)
        main = pwtest.write_file(ndir, "nginx.conf", f"daemon off;\npid {ndir}/nginx.pid;\nerror_log {ndir}/error.log;\n"
                                 f"events {{}}\nhttp {{\naccess_log off;\n{conf}\n}}\n")
        pwtest.Proc(["nginx", "-p", ndir, "-c", main], name="nginx")
        status, _ = wait_https(nport, crt)
        assert status == 200, status
        status, body = https_get(nport, "/v1/config", crt, tokens["admin"])
        assert status == 200 and b"services" in body, (status, body[:200])
    else:
        print("NOTE: nginx is not installed: its snippet was not run")
    if shutil.which("haproxy"):
        conf = snippet(md, "# /etc/haproxy/haproxy.cfg (the Pathway part)")
        conf = conf.replace("/etc/ssl/pathway/cp.pem", pem)
        conf = swap_ports(conf, {7443: hport, 7070: cport})
        cfg = pwtest.write_file(d, "haproxy.cfg", conf)
        p = subprocess.run(["haproxy", "-c", "-f", cfg], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and "[WARNING]" not in p.stdout + p.stderr, p.stdout + p.stderr
        pwtest.Proc(["haproxy", "-db", "-f", cfg], name="haproxy")
        status, _ = wait_https(hport, pem)
        assert status == 200, status
        status, body = https_get(hport, "/v1/dataplanes", pem, tokens["viewer"])
        assert status == 200, (status, body[:200])
    else:
        print("NOTE: haproxy is not installed: its snippet was not run")

    # a dataplane, from /etc/pathway/pathway.yaml as the doc writes it, reaching the control plane
    # directly (its client verifies certificates against the system store, which the throwaway one
    # is not in)
    dport, aport = pwtest.free_port(), pwtest.free_port()
    dp_yaml = snippet(md, "# /etc/pathway/pathway.yaml")
    dp_yaml = dp_yaml.replace("https://cp.example.internal:7443", f"http://127.0.0.1:{cport}")
    dp_yaml = dp_yaml.replace("/etc/pathway/", etc).replace("/var/lib/pathway", var + "pathway")
    dp_yaml = dp_yaml.replace("0.0.0.0:3069", f"127.0.0.1:{dport}")
    dp_yaml = swap_ports(dp_yaml, {9901: aport})
    dp_conf = pwtest.write_file(etc, "pathway.yaml", dp_yaml)
    p = subprocess.run([pwtest.binary("pathway"), "--check", "-c", dp_conf], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stdout + p.stderr
    pwtest.Proc([pwtest.binary("pathway"), "-c", dp_conf], name="pathway")
    deadline, state = time.time() + 15, None
    while time.time() < deadline:
        status, _, body = pwtest.request_json(cport, "GET", "/v1/dataplanes",
                                              headers={"Authorization": f"Bearer {tokens['viewer']}"})
        dps = {x["id"]: x for x in (body or {}).get("dataplanes", [])}
        state = dps.get("eu-1", {}).get("state")
        if state == "synced":
            break
        time.sleep(0.2)
    assert state == "synced", f"eu-1: {state}"
    assert os.listdir(var + "pathway"), "the dataplane kept no state in its state directory"
    # eu-1's token is limited to its id, as the doc says
    status, _, _ = pwtest.request(cport, "GET", "/v1/dataplanes/eu-2/config?version=0&wait=1s",
                                  headers={"Authorization": f"Bearer {tokens['dp-eu-1']}"})
    assert status == 403, status

    # backup as the doc writes it (the command comes with the control plane's backup work; until
    # then this says so)
    help_text = subprocess.run([pwtest.binary("pathway-control"), "--help"], capture_output=True, text=True).stdout
    line = next(l for l in md.splitlines() if re.match(r"pathway-control .*\bbackup\b", l))
    if re.search(r"\bbackup\b", help_text):
        copy = os.path.join(d, "backup.db")
        cmd = line.split("#")[0].replace("/etc/pathway/", etc).split()
        # everything up to `backup`, then a file here (the doc's destination holds a $(date ...))
        cmd = [pwtest.binary("pathway-control")] + cmd[1:cmd.index("backup") + 1] + [copy]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and os.path.getsize(copy) > 0, (cmd, p.stdout, p.stderr)
    else:
        print("NOTE: this pathway-control has no `backup` command yet: docs/deploy.md's backup line was not run")
    cp.stop()


if __name__ == "__main__":
    pwtest.main()
