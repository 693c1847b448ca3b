"""pathwayctl and safe rollouts (issue 14), against a scripted control plane on 127.0.0.1 that
records every request and answers as the rollout API does: the rollout flags of apply, set and
rollback become the `rollout` object beside the write (bad flags are refused before any call),
--force, `rollout status` (the table, --json, --watch and its exit codes), `rollout list` and
pause / resume / promote / abort."""

import json
import tempfile
import time

import pwtest
from pwtest import main, test
from ctl_util import TOKEN, Mock, ctl, fixed

DOC = {"log": {"level": "info"}, "services": [{"id": "eth", "endpoints": [{"url": "http://127.0.0.1:8545"}]}]}
DOC_YAML = ("log:\n  level: warn\nservices:\n  - id: eth\n    endpoints:\n      - url: http://127.0.0.1:8545\n")


def version(n, doc=DOC, kind="apply"):
    return {"version": n, "created_at": "2026-12-01T10:00:00.000Z", "author": "ops", "message": "", "kind": kind,
            "source_version": n - 1 if n > 1 else None, "hash": f"{n:064x}", "document": doc}



def write_routes(rollout=None):
    """A control plane whose active version is 3 and that stores any write as version 4."""
    created = dict(version(4), created=True)
    if rollout is not None:
        created["rollout"] = rollout
    return {
        ("GET", "/v1/config"): fixed(200, DOC, {"ETag": '"3"'}),
        ("GET", "/v1/versions/4"): fixed(200, version(4)),
        ("PUT", "/v1/config"): fixed(201, created),
        ("PATCH", "/v1/config"): fixed(201, created),
        ("POST", "/v1/rollback"): fixed(201, dict(created, kind="rollback", source_version=2)),
    }


def header(headers, name):
    return {k.lower(): v for k, v in headers.items()}.get(name.lower())


@test
def rollout_flags_become_the_rollout_object():
    mock = Mock(write_routes(rollout={"id": 7, "state": "progressing"}))
    path = pwtest.write_file(tempfile.mkdtemp(prefix="pw-ctl-"), "fleet.yaml", DOC_YAML)
    try:
        rc, out, err = ctl(mock, "apply", path, "--canary", "percent=10", "--steps", "10,50", "--hold", "2m",
                           "--gate-interval", "30s", "--min-requests", "500", "--max-error-rate-increase", "0.01",
                           "--max-p99-ratio", "1.5", "--failures-allowed", "1", "-m", "tune")
        assert rc == 0, (rc, out, err)
        assert "rollout 7 progressing" in out and "pathwayctl rollout status --watch" in out, out
        p, h, body = mock.last("PUT")
        # the YAML file goes as JSON, its keys beside the rollout object
        assert header(h, "Content-Type") == "application/json" and header(h, "If-Match") == '"3"', h
        assert p == "/v1/config?message=tune", p
        assert body == {"log": {"level": "warn"}, "services": DOC["services"], "rollout": {
            "canary": {"percent": 10},
            "steps": [{"percent": 10, "hold": "2m"}, {"percent": 50, "hold": "2m"}],
            "gate": {"interval": "30s", "min_requests": 500, "max_error_rate_increase": 0.01, "max_p99_ratio": 1.5,
                     "failures_allowed": 1}}}, body

        # labels, several; --force: no If-Match and force beside the rollout
        # labels, several, then a step of the labelled dataplanes alone (0); --force: no If-Match and
        # force beside the rollout
        rc, out, err = ctl(mock, "apply", path, "--canary", "label=canary=true", "--canary", "label=region=eu", "--steps", "0,50",
                           "--hold", "5m", "--force")
        assert rc == 0, (rc, out, err)
        _, h, body = mock.last("PUT")
        assert header(h, "If-Match") is None, h
        assert body["rollout"] == {"canary": {"labels": {"canary": "true", "region": "eu"}},
                                   "steps": [{"percent": 0, "hold": "5m"}, {"percent": 50, "hold": "5m"}]}, body
        assert body["force"] is True, body

        # set: the merge patch keeps its type and gains the rollout
        rc, out, err = ctl(mock, "set", "log.level=debug", "--canary", "percent=25", "--steps", "25,100", "--hold", "90s")
        assert rc == 0, (rc, out, err)
        _, h, body = mock.last("PATCH")
        assert header(h, "Content-Type") == "application/merge-patch+json" and header(h, "If-Match") == '"3"', h
        assert body == {"log": {"level": "debug"},
                        "rollout": {"canary": {"percent": 25},
                                    "steps": [{"percent": 25, "hold": "90s"}, {"percent": 100, "hold": "90s"}]}}, body

        # rollback: beside `to`; no canary: step 0 is the first step's share
        rc, out, err = ctl(mock, "rollback", "2", "--steps", "50", "--hold", "1m", "--force")
        assert rc == 0, (rc, out, err)
        _, h, body = mock.last("POST")
        assert body == {"to": 2, "rollout": {"steps": [{"percent": 50, "hold": "1m"}]}, "force": True}, body

        # no rollout flag: the file goes as it is, as before
        rc, out, err = ctl(mock, "apply", path)
        assert rc == 0, (rc, out, err)
        _, h, body = mock.last("PUT")
        assert body == DOC_YAML.encode() and "yaml" in header(h, "Content-Type"), (h, body)
    finally:
        mock.close()


@test
def bad_rollout_flags_are_refused_before_any_call():
    mock = Mock(write_routes())
    path = pwtest.write_file(tempfile.mkdtemp(prefix="pw-ctl-"), "fleet.yaml", DOC_YAML)
    r = ["--steps", "10,50", "--hold", "2m"]  # what a rollout needs beside the flag under test
    cases = [
        (["apply", path, "--canary", "percent=0", *r], "--canary percent=N: N must be a whole number from 1 to 100, not '0'"),
        (["apply", path, "--canary", "percent=ten", *r], "not 'ten'"),
        (["apply", path, "--canary", "10%", *r], "--canary: expected percent=N or label=NAME=VALUE, not '10%'"),
        (["apply", path, "--canary", "label=canary", *r], "expected percent=N or label=NAME=VALUE"),
        (["apply", path, "--canary", "label=a b=c", *r], "a label name is 1 to 63 letters"),
        (["apply", path, "--canary", "percent=5", "--canary", "label=a=b", *r], "percent=N stands alone"),
        (["apply", path, "--canary", "label=a=b", "--canary", "label=a=c", *r], "label a given twice"),
        (["apply", path, "--canary", "percent=10"], "a rollout needs --steps P1,P2,..."),
        (["apply", path, "--steps", "10,50"], "a rollout needs --hold DURATION"),
        (["apply", path, "--max-p99-ratio", "2"], "a rollout needs --steps"),
        (["apply", path, "--steps", "10,50,30", "--hold", "2m"], "--steps: steps must increase (30 after 50)"),
        (["apply", path, "--steps", "10,10", "--hold", "2m"], "steps must increase (10 after 10)"),
        (["apply", path, "--steps", "10,,50", "--hold", "2m"], "each step is a percentage from 1 to 100"),
        (["apply", path, "--steps", "10,150", "--hold", "2m"], "not '150'"),
        (["apply", path, "--steps", "0,50", "--hold", "2m"], "0 is only a first step after --canary label="),
        (["apply", path, "--canary", "percent=10", "--steps", "0,50", "--hold", "2m"], "0 is only a first step"),
        (["apply", path, "--canary", "label=a=b", "--steps", "10,0", "--hold", "2m"], "0 is only a first step"),
        (["apply", path, "--steps", ",".join(str(i) for i in range(1, 18)), "--hold", "2m"], "--steps: at most 16 steps"),
        (["apply", path, "--steps", "10", "--hold", "soon"], "--hold 'soon'"),
        (["apply", path, "--steps", "10", "--hold", "0s"], "--hold: a duration above 0"),
        (["apply", path, *r, "--gate-interval", "0s"], "--gate-interval: a duration above 0"),
        (["apply", path, *r, "--min-requests", "-1"], "--min-requests: a whole number from 0"),
        (["apply", path, *r, "--max-error-rate-increase", "1.5"], "a fraction from 0 to 1"),
        (["apply", path, *r, "--max-p99-ratio", "0"], "--max-p99-ratio: a number above 0"),
        (["apply", path, *r, "--failures-allowed", "x"], "--failures-allowed: a whole number"),
        (["apply", path, *r, "--wait"], "--wait does not apply to a rollout"),
        (["set", "log.level=debug", *r, "--force", "--if-match", "3"], "exclude each other"),
        (["versions", "--canary", "percent=10"], "versions: option --canary does not apply"),
        (["rollout", "status", "--steps", "10"], "option --steps does not apply"),
        (["rollout", "list", "--watch"], "--watch is for `rollout status`"),
        (["rollout", "stauts"], 'unknown subcommand "stauts" (did you mean "status"?)'),
        (["rollout", "list", "7"], "rollout list: takes no ID"),
    ]
    try:
        for args, want in cases:
            rc, out, err = ctl(mock, *args)
            assert rc == 2 and want in err, (args, rc, out, err)
        assert mock.requests == [], [(m, p) for m, p, _, _ in mock.requests]
    finally:
        mock.close()


@test
def force_resends_after_a_409():
    """--force without a rollout: a write refused because a rollout progresses is sent again with
    force (so a control plane without rollouts never sees the key)."""
    puts = []

    def put(q, body):
        puts.append(body)
        if b'"force"' not in body:
            return 409, {"error": "rollout 7 is progressing; force: true supersedes it"}, {}
        return 201, dict(version(4), created=True), {}

    routes = write_routes()
    routes[("PUT", "/v1/config")] = put
    mock = Mock(routes)
    path = pwtest.write_file(tempfile.mkdtemp(prefix="pw-ctl-"), "fleet.yaml", DOC_YAML)
    try:
        rc, out, err = ctl(mock, "apply", path, "--force")
        assert rc == 0 and "created version 4" in out, (rc, out, err)
        assert "refused (409): rollout 7 is progressing" in err and "sending again with force" in err, err
        assert len(puts) == 2 and puts[0] == DOC_YAML.encode(), puts
        assert json.loads(puts[1]) == {"log": {"level": "warn"}, "services": DOC["services"], "force": True}, puts[1]
        # without --force the 409 is the answer
        rc, out, err = ctl(mock, "apply", path)
        assert rc == 1 and "rejected (409): rollout 7 is progressing" in err and len(puts) == 3, (rc, err, len(puts))
    finally:
        mock.close()


def rollout(state="progressing", step=1, verdicts=None, rid=7, created="2026-12-01T10:00:00Z"):
    return {"id": rid, "state": state, "version": 12, "from_version": 11, "step": step,
            "steps": [{"percent": 10, "hold": "2m"}, {"percent": 50, "hold": "2m"}],
            "canary": {"percent": 10}, "dataplanes": ["dp-1", "dp-2"],
            "verdicts": verdicts if verdicts is not None else [
                {"at": "2026-12-01T10:00:30.123Z", "result": "pass",
                 "canary": {"requests": 812, "errors": 1, "error_rate": 0.001, "p99_ms": 25},
                 "baseline": {"requests": 2400, "errors": 2, "error_rate": 0.0008, "p99_ms": 25}, "reason": ""},
                {"at": "2026-12-01T10:01:00Z", "result": "fail",
                 "canary": {"requests": 790, "errors": 40, "error_rate": 0.0506, "p99_ms": 100},
                 "baseline": {"requests": 2380, "errors": 2, "error_rate": 0.00084, "p99_ms": 25},
                 "reason": "error rate 5.06% > 0.08% + 1.00%"},
                {"at": "2026-12-01T10:01:30Z", "result": "inconclusive",
                 "canary": {"requests": 12, "errors": 0, "error_rate": 0.0, "p99_ms": None},
                 "baseline": {"requests": 40, "errors": 0, "error_rate": 0.0, "p99_ms": 10}, "reason": "12 < 500 requests"}],
            "created_at": created, "updated_at": "2026-12-01T10:01:30Z"}


@test
def status_table_and_list():
    current = rollout()
    older = dict(rollout(state="promoted", rid=6, created="2026-11-30T09:00:00.250Z", step=1, verdicts=[]), canary=None)
    mock = Mock({
        ("GET", "/v1/rollouts"): fixed(200, {"rollouts": [older, current]}),
        ("GET", "/v1/rollouts/7"): fixed(200, current),
        ("GET", "/v1/rollouts/6"): fixed(200, older),
    })
    try:
        # without ID: the one in progress (not the first listed)
        rc, out, err = ctl(mock, "rollout", "status")
        assert rc == 0, (rc, out, err)
        assert mock.requests[-1][1] == "/v1/rollouts/7", mock.requests[-1][1]
        lines = out.splitlines()
        assert lines[0] == "rollout 7: progressing, version 12 (from 11)", lines
        assert "canary     10% of the dataplanes" in lines and "step       2 of 2 (50%, hold 2m)" in lines, lines
        assert "dataplanes 2 in the step: dp-1, dp-2" in lines, lines
        head = next(l for l in lines if l.startswith("AT"))
        assert head.split() == ["AT", "RESULT", "CANARY", "ERR", "BASE", "ERR", "CANARY", "P99", "BASE", "P99", "CANARY", "N",
                                "BASE", "N", "REASON"], head
        rows = [l.split(None, 8) for l in lines if l.startswith("2026-12-01T10:0")]
        assert rows[0][:8] == ["2026-12-01T10:00:30Z", "pass", "0.10%", "0.08%", "25ms", "25ms", "812", "2400"], rows[0]
        assert rows[1][:8] == ["2026-12-01T10:01:00Z", "fail", "5.06%", "0.08%", "100ms", "25ms", "790", "2380"], rows[1]
        assert rows[1][8] == "error rate 5.06% > 0.08% + 1.00%", rows[1]
        assert rows[2][:8] == ["2026-12-01T10:01:30Z", "inconclusive", "0.00%", "0.00%", "-", "10ms", "12", "40"], rows[2]

        # --json: the API's object as it came
        rc, out, err = ctl(mock, "rollout", "status", "6", "--json")
        assert rc == 0 and json.loads(out) == older, (rc, out, err)
        rc, out, err = ctl(mock, "rollout", "status", "6")
        assert rc == 0 and "rollout 6: promoted" in out and "no verdict yet" in out, out
        assert "canary     none: the first step's share" in out and "(created 2026-11-30T09:00:00Z)" in out, out

        rc, out, err = ctl(mock, "rollout", "list")
        assert rc == 0, (rc, out, err)
        lines = out.splitlines()
        assert lines[0].split() == ["ID", "STATE", "VERSION", "FROM", "STEP", "CREATED", "CANARY"], lines
        assert lines[1].split() == ["6", "promoted", "12", "11", "2/2", "2026-11-30T09:00:00Z", "none:", "the", "first", "step's", "share"], lines
        assert lines[2].split()[:2] == ["7", "progressing"], lines
        rc, out, err = ctl(mock, "rollout", "list", "--json")
        assert rc == 0 and json.loads(out) == {"rollouts": [older, current]}, out

        # an unknown id: the control plane's 404
        rc, out, err = ctl(mock, "rollout", "status", "99")
        assert rc == 1 and "404" in err, (rc, err)
    finally:
        mock.close()


@test
def status_without_rollouts():
    mock = Mock({("GET", "/v1/rollouts"): fixed(200, {"rollouts": []})})
    try:
        rc, out, err = ctl(mock, "rollout", "status")
        assert rc == 1 and "no rollout in progress" in err, (rc, out, err)
        rc, out, err = ctl(mock, "rollout", "list")
        assert rc == 0 and out == "no rollout yet\n", (rc, out, err)
        rc, out, err = ctl(mock, "rollout", "abort")
        assert rc == 1 and "no rollout in progress" in err, (rc, out, err)
    finally:
        mock.close()


@test
def a_control_plane_without_rollouts():
    mock = Mock({})  # every route 404 {"error": "no such route"}, as a control plane older than rollouts
    try:
        for args in (["rollout", "list"], ["rollout", "status"], ["rollout", "promote", "3"]):
            rc, out, err = ctl(mock, *args)
            assert rc == 1 and "rejected (404)" in err and "this control plane has no rollouts" in err, (args, rc, err)
    finally:
        mock.close()


def watch_run(final):
    """`rollout status 7 --watch` against a rollout that progresses for ~2 s, then ends in `final`."""
    start = time.time()

    def get(q, b):
        if time.time() - start < 2.0:
            return 200, rollout(verdicts=[]), {}
        return 200, rollout(state=final, verdicts=rollout()["verdicts"][:1]), {}

    mock = Mock({("GET", "/v1/rollouts/7"): get})
    try:
        t0 = time.time()
        rc, out, err = ctl(mock, "rollout", "status", "7", "--watch")
        took = time.time() - t0
        gets = len(mock.requests)
    finally:
        mock.close()
    return rc, out, err, took, gets


@test
def watch_exits_by_how_the_rollout_ends():
    rc, out, err, took, gets = watch_run("promoted")
    assert rc == 0, (rc, out, err)
    # about one look a second; a frame only when something changed (stdout is a pipe)
    assert 2 <= gets <= 5 and 1.5 <= took < 8, (gets, took)
    assert out.count("rollout 7: progressing") == 1 and out.count("rollout 7: promoted") == 1, out
    assert out.index("progressing") < out.index("promoted") and "pass" in out, out
    for final in ("rolled_back", "aborted"):
        rc, out, err, took, gets = watch_run(final)
        assert rc == 1 and f"rollout 7: {final}" in out, (final, rc, out, err)


@test
def pause_resume_promote_abort():
    acts = []

    def act(name):
        def fn(q, b):
            acts.append(name)
            return 200, {"id": 7, "state": {"pause": "paused", "resume": "progressing", "promote": "promoted",
                                            "abort": "rolled_back"}[name]}, {}
        return fn

    routes = {("GET", "/v1/rollouts"): fixed(200, {"rollouts": [rollout(state="paused")]})}
    for name in ("pause", "resume", "promote", "abort"):
        routes[("POST", f"/v1/rollouts/7/{name}")] = act(name)
    routes[("POST", "/v1/rollouts/8/pause")] = fixed(409, {"error": "rollout 8 is promoted: nothing to pause"})
    mock = Mock(routes)
    try:
        for name, state in (("pause", "paused"), ("resume", "progressing"), ("promote", "promoted"), ("abort", "rolled_back")):
            rc, out, err = ctl(mock, "rollout", name)  # no ID: the paused one is the current one
            assert rc == 0 and out == f"rollout 7: {state}\n", (name, rc, out, err)
            p, h, body = mock.last("POST")
            assert p == f"/v1/rollouts/7/{name}" and header(h, "Authorization") == f"Bearer {TOKEN}", (p, h)
        assert acts == ["pause", "resume", "promote", "abort"], acts
        rc, out, err = ctl(mock, "rollout", "pause", "7", "--json")
        assert rc == 0 and json.loads(out) == {"id": 7, "state": "paused"}, (rc, out)
        rc, out, err = ctl(mock, "rollout", "pause", "8")
        assert rc == 1 and "rejected (409): rollout 8 is promoted" in err, (rc, err)
    finally:
        mock.close()


if __name__ == "__main__":
    main()
