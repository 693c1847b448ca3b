"""`make install` as an operator or a packager runs it (docs/deploy.md): `make install DESTDIR=$tmp
PREFIX=/usr` puts the binaries, the example configs, the docs, the systemd units and the sysusers
file where they belong, the installed binaries run, and the units are hardened and valid:
`systemd-analyze verify` and `systemd-analyze security --offline` when systemd-analyze is on the
machine; without it, the units' keys are checked against the directives they may use (and the test
says so). The units' own command lines are run as systemd would run them: ExecStartPre, ExecStart,
ExecReload (SIGHUP to the dataplane), then SIGTERM.

Standard library only; nothing is written outside temporary directories."""

import configparser
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pwtest
from pwtest import test

BINARIES = ["pathway", "pathway-control", "pathwayctl", "pathway-config"]
UNITS = ["pathway.service", "pathway-control.service"]

# every [Service] directive the units use: the fallback check when systemd-analyze is absent (a
# misspelt or unknown key is what `systemd-analyze verify` would have reported)
KNOWN_SERVICE_KEYS = {
    "Type", "Environment", "ExecStartPre", "ExecStart", "ExecReload", "KillSignal", "TimeoutStopSec", "Restart",
    "RestartSec", "LimitNOFILE", "User", "Group", "DynamicUser", "StateDirectory", "StateDirectoryMode", "UMask",
    "NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
    "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
    "ProtectHostname", "ProtectProc", "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime",
    "RestrictSUIDSGID", "RemoveIPC", "LockPersonality", "MemoryDenyWriteExecute", "SystemCallArchitectures",
    "SystemCallFilter", "SystemCallErrorNumber", "CapabilityBoundingSet", "AmbientCapabilities",
}
KNOWN_UNIT_KEYS = {"Description", "Documentation", "After", "Wants"}
KNOWN_INSTALL_KEYS = {"WantedBy"}

def tmpdir():
    return pwtest.tmpdir("pw-install-")


def make_install(destdir, prefix):
    p = subprocess.run(["make", "-s", "-C", pwtest.SOURCE_DIR, "install", f"DESTDIR={destdir}", f"PREFIX={prefix}",
                        f"BUILD={pwtest.BUILD_DIR}"], capture_output=True, text=True, timeout=600, env=pwtest.make_env())
    assert p.returncode == 0, f"make install failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def install_prefix(prefix):
    """What `make install PREFIX=prefix` runs after the build (no DESTDIR): the units then name
    binaries that exist, which `systemd-analyze verify` checks."""
    env = pwtest.make_env()
    p = subprocess.run(["cmake", "--install", pwtest.BUILD_DIR, "--prefix", prefix], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stdout + p.stderr


def read_unit(path):
    """A unit file as {section: [(key, value), ...]} (repeated keys kept, in order)."""
    sections, cur = {}, None
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                cur = sections.setdefault(line[1:-1], [])
                continue
            assert cur is not None and "=" in line, f"{path}:{n}: not 'Key=value' in a section: {line}"
            k, v = line.split("=", 1)
            cur.append((k.strip(), v.strip()))
    return sections


def values(sections, section, key):
    return [v for k, v in sections.get(section, []) if k == key]


def check_hardening(path, prefix):
    u = read_unit(path)
    name = os.path.basename(path)
    svc = dict(u["Service"])
    for k, want in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                    ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("RestrictNamespaces", "yes"),
                    ("CapabilityBoundingSet", ""), ("UMask", "0077")]:
        assert svc.get(k) == want, f"{name}: {k}={svc.get(k)!r}, want {want!r}"
    assert svc.get("DynamicUser") == "yes" or svc.get("User"), f"{name}: runs as root"
    assert svc.get("User") != "root", name
    assert set(svc["RestrictAddressFamilies"].split()) <= {"AF_INET", "AF_INET6", "AF_UNIX"}, svc
    assert svc.get("StateDirectory"), f"{name}: no StateDirectory"
    assert values(u, "Install", "WantedBy") == ["multi-user.target"], u.get("Install")
    for k, v in u["Service"]:
        if k.startswith("Exec"):
            exe = v.split()[0]
            assert exe.startswith(prefix + "/bin/") or exe == "/bin/kill", f"{name}: {k}={v}: not the installed binary"
    text = open(path).read()
    assert not re.search(r"@[A-Z]+@", text), f"{name}: a placeholder was not filled in:\n{text}"
    return u


def check_keys_without_systemd(u, name):
    for section, known in (("Unit", KNOWN_UNIT_KEYS), ("Service", KNOWN_SERVICE_KEYS), ("Install", KNOWN_INSTALL_KEYS)):
        for k, _ in u.get(section, []):
            assert k in known, f"{name}: [{section}] {k}: not a directive these units may use"
    assert set(u) == {"Unit", "Service", "Install"}, f"{name}: sections {sorted(u)}"


def run_version(exe):
    """`exe --version` prints "NAME X.Y.Z" and exits 0."""
    name = os.path.basename(exe)
    p = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, f"{name} --version: exit {p.returncode}: {p.stderr}"
    assert re.match(rf"{re.escape(name)} \d+\.\d+\.\d+", p.stdout), f"{name} --version: {p.stdout!r}"


@test
def make_install_destdir_layout_and_binaries_run():
    dest = tmpdir()
    make_install(dest, "/usr")
    root = os.path.join(dest, "usr")
    for b in BINARIES:
        path = os.path.join(root, "bin", b)
        assert os.access(path, os.X_OK), f"{path} not installed"
        run_version(path)
    assert not os.path.exists(os.path.join(root, "bin", "pathway-mock-upstream")), "the test mock is not installed"
    ex = os.path.join(root, "share", "pathway", "examples")
    for f in ("standalone.yaml", "managed.yaml", "controlplane.yaml", "fleet.yaml", "tokens/admin.token",
              "tokens/viewer.token", "tokens/dataplane.token"):
        assert os.path.isfile(os.path.join(ex, f)), f"examples/{f} not installed"
    for f in ("README.md", "deploy.md", "architecture.md", "managed.md", "config.md"):
        assert os.path.isfile(os.path.join(root, "share", "doc", "pathway", f)), f"doc {f} not installed"
    for unit in UNITS:
        assert os.path.isfile(os.path.join(root, "lib", "systemd", "system", unit)), f"{unit} not installed"
    with open(os.path.join(root, "lib", "sysusers.d", "pathway.conf")) as f:
        assert re.search(r"^u pathway ", f.read(), re.M)
    # nothing lands outside DESTDIR/PREFIX
    assert sorted(os.listdir(dest)) == ["usr"], os.listdir(dest)
    # the installed binaries read the installed examples
    for cfg in ("standalone.yaml", "managed.yaml"):
        p = subprocess.run([os.path.join(root, "bin", "pathway"), "--check", "-c", os.path.join(ex, cfg)],
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 0, (cfg, p.stdout, p.stderr)
    p = subprocess.run([os.path.join(root, "bin", "pathway-config"), "check", "--fleet", os.path.join(ex, "fleet.yaml")],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stdout + p.stderr
    # the units name the binaries under PREFIX, not DESTDIR
    for unit in UNITS:
        check_hardening(os.path.join(root, "lib", "systemd", "system", unit), "/usr")


@test
def units_verify_and_are_hardened():
    prefix = tmpdir()
    install_prefix(prefix)
    units = [os.path.join(prefix, "lib", "systemd", "system", u) for u in UNITS]
    parsed = {u: check_hardening(u, prefix) for u in units}
    # the check that stands in for systemd-analyze where it is absent runs everywhere, so it stays true
    for u, p in parsed.items():
        check_keys_without_systemd(p, os.path.basename(u))
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("NOTE: systemd-analyze is not on this machine: the units' keys were checked against the list of "
              "directives they may use instead of `systemd-analyze verify`")
        return
    # verify exits 0 on unknown keys and bad values and only prints them: any output is a failure
    p = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), \
        f"systemd-analyze verify ({p.returncode}):\n{p.stdout}{p.stderr}"
    for u in units:
        # exposure 0 (locked down) .. 10 (unsafe); 2.5 and lower is systemd's "OK"
        p = subprocess.run([analyze, "security", "--offline=yes", "--threshold=25", u], capture_output=True, text=True,
                           timeout=60)
        summary = [l for l in p.stdout.splitlines() if "Overall exposure" in l]
        assert p.returncode == 0, f"{os.path.basename(u)}: {summary or p.stdout[-2000:]} {p.stderr}"


def exec_lines(unit, key, env):
    """The command lines of `key` in the unit, with ${VAR} from its Environment= and `env`."""
    u = read_unit(unit)
    variables = dict(v.split("=", 1) for v in values(u, "Service", "Environment"))
    variables.update(env)
    out = []
    for line in values(u, "Service", key):
        line = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], line)
        out.append(line.split())
    return out


@test
def unit_command_lines_start_reload_and_stop():
    prefix = tmpdir()
    install_prefix(prefix)
    sysdir = os.path.join(prefix, "lib", "systemd", "system")
    work = tmpdir()
    # the dataplane, as pathway.service runs it, on a config of our own (ports picked here)
    up = pwtest.free_port()
    pwtest.Proc([pwtest.binary("pathway-mock-upstream"), "--port", str(up)], name="mock")
    port, admin = pwtest.free_port(), pwtest.free_port()
    cfg = pwtest.write_file(work, "pathway.yaml", f"listen:\n  - address: 127.0.0.1:{port}\nadmin:\n  address: 127.0.0.1:{admin}\n"
                            f"threads: 1\nservices:\n  - id: eth\n    endpoints:\n      - url: http://127.0.0.1:{up}\n")
    unit = os.path.join(sysdir, "pathway.service")
    for cmd in exec_lines(unit, "ExecStartPre", {"PATHWAY_CONFIG": cfg}):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        assert p.returncode == 0, (cmd, p.stdout, p.stderr)
    [start] = exec_lines(unit, "ExecStart", {"PATHWAY_CONFIG": cfg})
    dp = pwtest.Proc(start, name="pathway")
    pwtest.wait_port(admin)
    deadline = time.time() + 10
    while pwtest.request(admin, "GET", "/ready")[0] != 200 and time.time() < deadline:
        time.sleep(0.05)
    # systemctl reload: --check, then SIGHUP to the main process, which re-reads the file
    with open(cfg, "a") as f:
        f.write("log:\n  level: debug\n")
    for cmd in exec_lines(unit, "ExecReload", {"PATHWAY_CONFIG": cfg, "MAINPID": str(dp.p.pid)}):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        assert p.returncode == 0, (cmd, p.stdout, p.stderr)
    deadline = time.time() + 10
    level = None
    while time.time() < deadline:
        status, _, body = pwtest.request_json(admin, "GET", "/config")
        level = (body.get("document") or body).get("log", {}).get("level") if status == 200 else None
        if level == "debug":
            break
        time.sleep(0.1)
    assert level == "debug", f"ExecReload did not reload the file: log.level {level}\n{dp.output()[-2000:]}"
    assert dp.p.poll() is None, dp.output()
    # a bad file: ExecReload's --check fails, so `systemctl reload` reports it
    with open(cfg, "a") as f:
        f.write("threads: lots\n")
    check = exec_lines(unit, "ExecReload", {"PATHWAY_CONFIG": cfg, "MAINPID": str(dp.p.pid)})[0]
    p = subprocess.run(check, capture_output=True, text=True, timeout=10)
    assert p.returncode != 0 and "threads" in p.stderr, (p.returncode, p.stderr)
    # KillSignal=SIGTERM: drains and exits 0
    dp.p.send_signal(signal.SIGTERM)
    assert dp.p.wait(20) == 0, dp.output()

    # the control plane, as pathway-control.service runs it
    cport = pwtest.free_port()
    pwtest.write_file(work, "admin.token", "install-test-admin-token-0123456789\n")
    ccfg = pwtest.write_file(work, "controlplane.yaml", f"listen: 127.0.0.1:{cport}\ndatabase: cp.db\ntokens:\n"
                             "  - {name: ops, role: admin, file: admin.token}\n")
    [cstart] = exec_lines(os.path.join(sysdir, "pathway-control.service"), "ExecStart", {"PATHWAY_CONTROL_CONFIG": ccfg})
    cp = pwtest.Proc(cstart, name="pathway-control")
    pwtest.wait_port(cport)
    assert pwtest.request(cport, "GET", "/healthz")[0] == 200
    cp.p.send_signal(signal.SIGTERM)
    assert cp.p.wait(20) == 0, cp.output()


if __name__ == "__main__":
    pwtest.main()
