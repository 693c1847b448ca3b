"""schema/openapi.yaml lints clean with @redocly/cli (the version pinned in tools/lint/package-lock.json):
no error and no warning under the recommended rules (tools/lint/redocly.yaml says which rule is off
and why). The linter is installed with `npm ci` into tools/lint/node_modules when it is missing.
Without node and npm the test is skipped (exit 77); they are on every machine this project builds on."""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile

SOURCE_DIR = os.environ.get("PW_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
LINT_DIR = os.path.join(SOURCE_DIR, "tools", "lint")
REDOCLY = os.path.join(LINT_DIR, "node_modules", ".bin", "redocly")
ENV = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true", NO_UPDATE_NOTIFIER="1")


def install():
    """npm ci from the lock file, once, even with several test runs at the same time."""
    with open(os.path.join(LINT_DIR, ".install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = os.path.join(LINT_DIR, "node_modules", "@redocly", "cli", "package.json")
        want = json.load(open(os.path.join(LINT_DIR, "package-lock.json")))["packages"]["node_modules/@redocly/cli"]["version"]
        if os.path.exists(installed) and json.load(open(installed))["version"] == want:
            return
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=LINT_DIR, env=ENV, capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0:
            raise AssertionError("npm ci in tools/lint failed:\n" + r.stdout + r.stderr)


def lint(path):
    """The linter's totals and problems for one file."""
    r = subprocess.run([REDOCLY, "lint", "--config", os.path.join(LINT_DIR, "redocly.yaml"), "--format=json", path],
                       cwd=LINT_DIR, env=ENV, capture_output=True, text=True, timeout=300)
    start = r.stdout.find("{")
    if start < 0:
        raise AssertionError(f"redocly lint printed no report (exit {r.returncode}):\n{r.stdout}{r.stderr}")
    report = json.loads(r.stdout[start:])
    return report["totals"], report["problems"], report.get("version")


def main():
    if shutil.which("node") is None or shutil.which("npm") is None:
        print("SKIP: node and npm are needed for @redocly/cli")
        return 77
    install()
    totals, problems, version = lint(os.path.join(SOURCE_DIR, "schema", "openapi.yaml"))
    pinned = json.load(open(os.path.join(LINT_DIR, "package.json")))["devDependencies"]["@redocly/cli"]
    assert version == pinned, f"ran @redocly/cli {version}, pinned {pinned}"
    for p in problems:
        where = p.get("location", [{}])[0].get("pointer", "?")
        print(f"{p.get('severity')}: {p.get('ruleId')}: {p.get('message')} at {where}")
    assert totals["errors"] == 0 and totals["warnings"] == 0, totals
    # the linter is awake: a description that YAML reads as a mapping is an error
    with open(os.path.join(SOURCE_DIR, "schema", "openapi.yaml")) as f:
        text = f.read()
    broken = text.replace('description: "true = ACK, false = NACK"', "description: true = ACK, false = NACK", 1)
    assert broken != text
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as tmp:
        tmp.write(broken)
    try:
        totals, problems, _ = lint(tmp.name)
    finally:
        os.unlink(tmp.name)
    assert totals["errors"] >= 1, (totals, problems)
    print("ok   openapi.yaml lints clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
