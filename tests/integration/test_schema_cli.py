"""pathway-config as an operator runs it: check, fmt, hash, diff, doc."""
import json
import os
import subprocess
import tempfile

from pwtest import SOURCE_DIR, binary, main, test, write_file


def run(*args):
    p = subprocess.run([binary("pathway-config"), *args], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


@test
def check_example_is_valid():
    code, out, err = run("check", os.path.join(SOURCE_DIR, "examples", "standalone.yaml"))
    assert code == 0, err
    assert "ok (2 services" in out


@test
def ten_mistakes_ten_errors():
    path = os.path.join(SOURCE_DIR, "tests", "data", "ten_mistakes.yaml")
    code, out, err = run("check", path)
    assert code == 1
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 10, err
    for want in ("threads:", "log.level:", "limits.max_request_body:", "limiter.max_concurrent:", "limiter.queue_timeout:",
                 "pool.max_idle_totl: unknown key", "services[0].endpoints[0].url: scheme must be http or https",
                 "services[1].endpoints: must have at least one entry", "services[1].id: duplicate service id",
                 "listen[1].address: duplicate listen address"):
        assert any(want in l for l in lines), f"missing {want!r} in:\n{err}"
    assert all(l.startswith(path + ": ") for l in lines)


@test
def fmt_hash_roundtrip_and_fleet():
    ex = os.path.join(SOURCE_DIR, "examples", "standalone.yaml")
    code, canon, _ = run("fmt", ex)
    assert code == 0
    doc = json.loads(canon)
    assert doc["services"][1]["pool"] == {"max_conns_per_host": 20}
    with tempfile.TemporaryDirectory() as d:
        # canonical JSON and YAML forms parse back to the same hash
        j = write_file(d, "c.json", canon)
        code, yaml_text, _ = run("fmt", "--yaml", ex)
        y = write_file(d, "c.yaml", yaml_text)
        hashes = {run("hash", p)[1].strip() for p in (ex, j, y)}
        assert len(hashes) == 1 and len(hashes.pop()) == 64
        # a fleet document may not carry node-local keys
        code, _, err = run("check", "--fleet", ex)
        assert code == 1 and "listen: node-local setting" in err
        # diff prints a JSON Patch
        doc["limiter"]["max_concurrent"] = 7
        b = write_file(d, "b.json", json.dumps(doc))
        code, out, _ = run("diff", j, b)
        assert code == 0
        assert json.loads(out) == [{"op": "replace", "path": "/limiter/max_concurrent", "value": 7}]


@test
def unreadable_and_usage():
    code, _, err = run("check", "/nonexistent/pathway.yaml")
    assert code == 1 and "/nonexistent/pathway.yaml: cannot open" in err
    assert run()[0] == 2
    assert run("frob", "x")[0] == 2
    code, out, _ = run("doc")
    assert code == 0 and out.startswith("# Config reference")


if __name__ == "__main__":
    main()
