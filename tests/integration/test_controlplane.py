"""pathway-control's REST API over HTTP: every call, its errors, auth, If-Match, rollback, tags,
dataplane reports. Each test starts its own control plane on 127.0.0.1."""

import json
import os
import subprocess
import threading

import cp_util
import pwtest
from cp_util import ADMIN, DATAPLANE, VIEWER, ControlPlane, expect, fleet


def put(cp, doc, **kw):
    return cp.call("PUT", "/v1/config", doc, **kw)


@pwtest.test
def test_healthz_metrics_and_auth():
    cp = ControlPlane()
    s, _, b = cp.call("GET", "/healthz", token=None)
    assert s == 200 and b["status"] == "ok" and b["active_version"] == 0
    s, h, b = cp.call("GET", "/v1/config", token=None)
    assert s == 401 and h["www-authenticate"].startswith("Bearer")
    expect(cp.call("GET", "/v1/config", token="not-a-token-at-all-000000"), 401)
    expect(cp.call("GET", "/v1/config", token=None, headers={"Authorization": "Basic " + ADMIN}), 401)
    expect(cp.call("GET", "/v1/config", token=None, headers={"Authorization": "Bearer "}), 401)
    expect(cp.call("GET", "/metrics", token=None), 401)
    # roles
    expect(put(cp, fleet(), token=VIEWER), 403)
    expect(put(cp, fleet(), token=DATAPLANE), 403)
    expect(cp.call("GET", "/v1/versions", token=DATAPLANE), 403)
    expect(cp.call("GET", "/v1/dataplanes/dp-1/config", token=VIEWER), 403)
    expect(cp.call("POST", "/v1/dataplanes/dp-1/status", {"version": 0, "applied": True}, token=VIEWER), 403)
    expect(cp.call("POST", "/v1/rollback", {"to": 1}, token=VIEWER), 403)
    expect(cp.call("GET", "/v1/versions", token=VIEWER), 200)
    expect(cp.call("GET", "/v1/dataplanes/dp-1/config", token=DATAPLANE), 304)
    s, h, data = cp.request("GET", "/metrics", token=VIEWER)
    assert s == 200 and h["content-type"].startswith("text/plain")
    text = data.decode()
    for needle in ("pathway_control_active_version 0", "pathway_control_versions 0",
                   'pathway_control_dataplanes{state="synced"} 1', "pathway_control_long_polls 0",
                   'pathway_control_api_requests_total{route="GET /v1/config",status="401"} 4',
                   'pathway_control_api_requests_total{route="PUT /v1/config",status="403"} 2'):
        assert needle in text, (needle, text)
    # routing errors are JSON too
    for bad in ("/v2/nothing", "/v1/", "/v1/config/", "//v1/config", "/v1/versions/1/diff/x", "/%zz", "/v1/../v1/config"):
        expect(cp.call("GET", bad), 404)
    expect(cp.call("GET", "/v1/tags/st%00able"), 400)
    s, h, b = expect(cp.call("DELETE", "/v1/config"), 405)
    assert "GET" in h["allow"] and "PUT" in h["allow"]
    # the token never reaches the log
    cp.stop()
    assert ADMIN not in cp.proc.output() and VIEWER not in cp.proc.output()


@pwtest.test
def test_put_get_identical_yaml():
    cp = ControlPlane()
    expect(cp.call("GET", "/v1/config"), 404)
    s, h, b = expect(put(cp, fleet(), headers={"Pathway-Message": "first"}), 201)
    assert b["version"] == 1 and b["created"] is True and b["kind"] == "apply" and b["author"] == "ops"
    assert b["message"] == "first" and len(b["hash"]) == 64
    assert h["etag"] == '"1"' and h["location"] == "/v1/versions/1"
    s, h, doc = expect(cp.call("GET", "/v1/config", token=VIEWER), 200)
    assert h["etag"] == '"1"' and h["pathway-hash"] == b["hash"]
    assert doc["services"][0]["id"] == "eth" and doc["log"]["level"] == "info"
    assert "limits" in doc  # defaults filled in: the canonical form
    # the canonical document itself is identical: 200, no new version
    s, _, b2 = expect(put(cp, doc), 200)
    assert b2["version"] == 1 and b2["created"] is False
    # YAML in, YAML out
    yaml_doc = "log:\n  level: warn\nservices:\n  - id: eth\n    endpoints:\n      - url: http://127.0.0.1:8545\n"
    s, _, b = expect(cp.call("PUT", "/v1/config?message=yaml%20please", yaml_doc, ctype="application/yaml"), 201)
    assert b["version"] == 2 and b["message"] == "yaml please"
    s, h, data = cp.request("GET", "/v1/config", headers={"Accept": "application/yaml"})
    assert s == 200 and h["content-type"] == "application/yaml"
    text = data.decode()
    assert "level: warn" in text and "id: eth" in text, text
    # what GET gives as YAML, PUT takes back as the same document
    s, _, b = expect(cp.call("PUT", "/v1/config", text, ctype="application/yaml"), 200)
    assert b["created"] is False and b["version"] == 2
    # If-None-Match
    s, _, _ = cp.request("GET", "/v1/config", headers={"If-None-Match": '"2"'})
    assert s == 304
    # a YAML body without a content type is recognised too
    expect(cp.call("PUT", "/v1/config", yaml_doc.replace("warn", "error")), 201)
    expect(cp.call("GET", "/v1/versions/3"), 200)
    # message given twice, or not UTF-8, or too long
    expect(cp.call("PUT", "/v1/config?message=b", fleet("debug"), headers={"Pathway-Message": "a"}), 400)
    expect(cp.call("PUT", "/v1/config?message=%ff%fe", fleet("debug")), 400)
    expect(cp.call("PUT", "/v1/config?message=" + "x" * 1100, fleet("debug")), 400)
    assert cp.call("GET", "/v1/versions")[2]["active_version"] == 3


@pwtest.test
def test_put_bad_inputs():
    cp = ControlPlane(max_body="64KiB")
    cases = [
        ("{not json", "application/json", "invalid JSON"),
        ("log: [unclosed", "application/yaml", "invalid YAML"),
        ("", "application/json", "empty"),
        ('{"log": {"level": "loud"}, "services": []}', "application/json", "log.level"),
        ('{"colour": 1, "services": [{"id": "eth", "endpoints": [{"url": "http://127.0.0.1:1"}]}]}', "application/json", "colour"),
        ('{"limiter": {"max_concurrent": 1e400}}', "application/json", ""),
        ('{"limiter": {"max_concurrent": 99999999999999999999999999}}', "application/json", ""),
        ('[1, 2, 3]', "application/json", ""),
        ('"just a string"', "application/json", ""),
        ('{"a": 1, "a": 2}', "application/json", ""),
    ]
    for body, ctype, needle in cases:
        s, _, b = cp.call("PUT", "/v1/config", body, ctype=ctype)
        assert s == 400, (body, s, b)
        assert needle in json.dumps(b), (needle, b)
    # every validation error is listed with its path
    s, _, b = expect(put(cp, {"log": {"level": "loud"}, "limiter": {"max_concurrent": -1}, "services": [{"id": "eth"}]}), 400)
    assert len(b["errors"]) >= 3, b
    joined = "\n".join(b["errors"])
    assert "log.level" in joined and "limiter.max_concurrent" in joined and "services[0]" in joined, joined
    # node-local keys are refused, and the error says so
    for key, value in (("listen", [{"address": "0.0.0.0:3069"}]), ("admin", {"address": "127.0.0.1:9901"}), ("threads", 2),
                       ("control_plane", {"url": "http://127.0.0.1:7070", "id": "dp-1"})):
        doc = fleet()
        doc[key] = value
        s, _, b = expect(put(cp, doc), 400)
        assert any(key in e and "node-local" in e for e in b["errors"]), b
    # wrong content types
    expect(cp.call("PUT", "/v1/config", json.dumps(fleet()), ctype="application/x-www-form-urlencoded"), 415)
    expect(cp.call("PUT", "/v1/config", json.dumps(fleet()), ctype="text/plain"), 415)
    # the body bound: refused by h2o before the handler runs, as our JSON 413 naming max_body
    big = json.dumps({"log": {"level": "info"}, "services": [], "pad": "x" * 70000})
    s, _, b = expect(cp.call("PUT", "/v1/config", big, ctype="application/json"), 413)
    assert "max_body" in b["error"]
    s, _, b = expect(cp.call("PUT", "/v1/config", "x" * 300000, ctype="application/json"), 413)
    s, _, b = expect(cp.call("POST", "/v1/rollback", "x" * 300000, ctype="application/json"), 413)
    # with today's phrase (RFC 9110), not libh2o's older one
    import http.client
    hc = http.client.HTTPConnection("127.0.0.1", cp.port, timeout=10)
    hc.request("PUT", "/v1/config", big, {"Authorization": "Bearer " + ADMIN, "Content-Type": "application/json"})
    r = hc.getresponse()
    assert (r.status, r.reason) == (413, "Content Too Large"), (r.status, r.reason)
    hc.close()
    # broken chunked framing is refused by h2o itself, still as a JSON error
    import socket
    with socket.create_connection(("127.0.0.1", cp.port), timeout=10) as sock:
        sock.sendall(("PUT /v1/config HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ADMIN +
                      "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n").encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head and json.loads(body)["error"], data
    # nothing was stored by any of it
    assert cp.call("GET", "/v1/versions")[2]["versions"] == []
    assert cp.call("GET", "/healthz", token=None)[0] == 200


@pwtest.test
def test_if_match():
    cp = ControlPlane()
    expect(put(cp, fleet(), headers={"If-Match": '"1"'}), 412)  # nothing stored yet
    expect(put(cp, fleet(), headers={"If-Match": '"0"'}), 201)  # "only if empty"
    s, _, b = expect(put(cp, fleet("warn"), headers={"If-Match": '"7"'}), 412)
    assert b["active_version"] == 1
    expect(put(cp, fleet("warn"), headers={"If-Match": "garbage"}), 412)
    expect(put(cp, fleet("warn"), headers={"If-Match": '"1"'}), 201)
    expect(put(cp, fleet("error"), headers={"If-Match": '"1"'}), 412)
    expect(put(cp, fleet("error"), headers={"If-Match": "*"}), 201)
    expect(cp.call("PATCH", "/v1/config", {"log": {"level": "debug"}}, headers={"If-Match": '"1"'}), 412)
    expect(cp.call("POST", "/v1/rollback", {"to": 1}, headers={"If-Match": '"1"'}), 412)
    assert cp.call("GET", "/v1/versions")[2]["active_version"] == 3
    # If-Match compares strongly (RFC 9110): the weak tag of the active version is no match
    for call in (lambda h: put(cp, fleet("debug"), headers=h),
                 lambda h: cp.call("PATCH", "/v1/config", {"log": {"level": "debug"}}, headers=h),
                 lambda h: cp.call("POST", "/v1/rollback", {"to": 1}, headers=h)):
        s, _, b = expect(call({"If-Match": 'W/"3"'}), 412)
        assert b["active_version"] == 3
    assert cp.call("GET", "/v1/versions")[2]["active_version"] == 3
    # If-None-Match compares weakly: W/"3" is the active version there
    assert cp.request("GET", "/v1/config", headers={"If-None-Match": 'W/"3"'})[0] == 304
    expect(put(cp, fleet("debug"), headers={"If-Match": '"3"'}), 201)


@pwtest.test
def test_two_writers_race_on_if_match():
    cp = ControlPlane()
    expect(put(cp, fleet()), 201)
    for round_ in range(10):
        active = cp.call("GET", "/v1/versions?limit=1")[2]["active_version"]
        barrier = threading.Barrier(2)
        results = []

        def writer(level):
            barrier.wait()
            results.append(put(cp, fleet(level, conns=10 + round_), headers={"If-Match": f'"{active}"'})[0])

        threads = [threading.Thread(target=writer, args=(lvl,)) for lvl in ("warn", "error")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(results) == [201, 412], results
        assert cp.call("GET", "/v1/versions?limit=1")[2]["active_version"] == active + 1


@pwtest.test
def test_patch_and_validate():
    cp = ControlPlane()
    expect(put(cp, fleet()), 201)
    s, _, b = expect(cp.call("PATCH", "/v1/config", {"defaults": {"pool": {"max_conns_per_host": 80}}},
                             ctype="application/merge-patch+json", headers={"Pathway-Message": "more conns"}), 201)
    assert b["version"] == 2 and b["kind"] == "patch" and b["source_version"] == 1 and b["message"] == "more conns"
    doc = cp.call("GET", "/v1/config")[2]
    assert doc["defaults"]["pool"]["max_conns_per_host"] == 80
    # null removes (back to the default), arrays are replaced whole
    expect(cp.call("PATCH", "/v1/config", {"defaults": {"pool": {"max_conns_per_host": None}},
                                           "services": [{"id": "poly", "endpoints": [{"url": "http://127.0.0.1:8547"}]}]}), 201)
    doc = cp.call("GET", "/v1/config")[2]
    assert doc["defaults"]["pool"]["max_conns_per_host"] == 50 and [s["id"] for s in doc["services"]] == ["poly"]
    # a patch that leaves nothing changed makes no version
    s, _, b = expect(cp.call("PATCH", "/v1/config", {"log": {"level": "info"}}), 200)
    assert b["created"] is False and b["version"] == 3
    # a patch that breaks the document: 400 with the path, nothing stored
    s, _, b = expect(cp.call("PATCH", "/v1/config", {"limiter": {"max_queue": "lots"}}), 400)
    assert any("limiter.max_queue" in e for e in b["errors"]), b
    expect(cp.call("PATCH", "/v1/config", {"threads": 4}), 400)
    expect(cp.call("PATCH", "/v1/config", "{broken", ctype="application/merge-patch+json"), 400)
    expect(cp.call("PATCH", "/v1/config", "log: {level: warn}", ctype="application/yaml"), 415)
    # validate: same checks, nothing stored
    s, _, b = expect(cp.call("POST", "/v1/config/validate", fleet("warn")), 200)
    assert b["valid"] is True and b["identical_to_active"] is False and b["document"]["log"]["level"] == "warn"
    current = cp.call("GET", "/v1/config")[2]
    s, _, b = expect(cp.call("POST", "/v1/config/validate", current), 200)
    assert b["identical_to_active"] is True
    s, _, b = expect(cp.call("POST", "/v1/config/validate", "log:\n  level: loud\n", ctype="application/yaml"), 400)
    assert any("log.level" in e for e in b["errors"])
    expect(cp.call("POST", "/v1/config/validate", fleet(), token=VIEWER), 403)
    expect(cp.call("POST", "/v1/config/validate", "x", ctype="image/png"), 415)
    assert cp.call("GET", "/v1/versions")[2]["active_version"] == 3


@pwtest.test
def test_versions_paging_and_diff():
    cp = ControlPlane()
    for i, lvl in enumerate(("debug", "info", "warn", "error")):
        expect(put(cp, fleet(lvl, conns=10 + i)), 201)
    s, _, b = expect(cp.call("GET", "/v1/versions", token=VIEWER), 200)
    assert [v["version"] for v in b["versions"]] == [4, 3, 2, 1] and b["next_before"] is None
    v = b["versions"][0]
    assert set(v) == {"version", "created_at", "author", "message", "kind", "source_version", "hash", "tags", "fleet"}, v
    assert v["tags"] == [] and v["fleet"] == {"synced": 0, "rejected": 0, "applying": 0}, v
    s, _, b = expect(cp.call("GET", "/v1/versions?limit=2"), 200)
    assert [v["version"] for v in b["versions"]] == [4, 3] and b["next_before"] == 3
    s, _, b = expect(cp.call("GET", "/v1/versions?limit=2&before=3"), 200)
    assert [v["version"] for v in b["versions"]] == [2, 1]
    s, _, b = expect(cp.call("GET", "/v1/versions/2"), 200)
    assert b["version"] == 2 and b["document"]["log"]["level"] == "info"
    assert b["tags"] == [] and b["fleet"] == {"synced": 0, "rejected": 0, "applying": 0}, b
    for bad in ("abc", "-1", "0", "1.5", "99999999999999999999999", "1e3", "%31"):
        expect(cp.call("GET", f"/v1/versions/{bad}"), 400)
    expect(cp.call("GET", "/v1/versions/99"), 404)
    expect(cp.call("GET", "/v1/versions?limit=0"), 400)
    expect(cp.call("GET", "/v1/versions?limit=5000"), 400)
    expect(cp.call("GET", "/v1/versions?before=x"), 400)
    expect(cp.call("GET", "/v1/versions?colour=red"), 400)
    # diff
    s, _, b = expect(cp.call("GET", "/v1/versions/3/diff"), 200)
    assert b["from"] == 2 and b["to"] == 3
    ops = {(o["op"], o["path"]): o.get("value") for o in b["patch"]}
    assert ops[("replace", "/log/level")] == "warn" and ops[("replace", "/defaults/pool/max_conns_per_host")] == 12, ops
    assert {"op": "replace", "path": "log.level", "from": "info", "to": "warn"} in b["changes"], b["changes"]
    ch = [c for c in b["changes"] if c["path"] == "defaults.pool.max_conns_per_host"]
    assert ch and ch[0]["from"] == 11 and ch[0]["to"] == 12, b["changes"]
    s, _, b = expect(cp.call("GET", "/v1/versions/4/diff?from=1"), 200)
    assert {"op": "replace", "path": "/log/level", "value": "error"} in b["patch"]
    s, _, b = expect(cp.call("GET", "/v1/versions/1/diff"), 200)
    assert b["from"] == 0 and any(o["op"] == "add" for o in b["patch"])
    s, _, b = expect(cp.call("GET", "/v1/versions/2/diff?from=2"), 200)
    assert b["patch"] == []
    expect(cp.call("GET", "/v1/versions/2/diff?from=x"), 400)
    expect(cp.call("GET", "/v1/versions/2/diff?from=77"), 404)
    expect(cp.call("GET", "/v1/versions/77/diff"), 404)


@pwtest.test
def test_rollback_to_version_and_tag():
    cp = ControlPlane()
    expect(put(cp, fleet("info", conns=50)), 201)                         # 1
    expect(cp.call("PUT", "/v1/tags/stable", {"version": 1, "message": "known good"}), 200)
    expect(put(cp, fleet("info", conns=500)), 201)                        # 2
    # rollback to a version
    s, h, b = expect(cp.call("POST", "/v1/rollback", {"to": 1, "message": "pool too big"}), 201)
    assert b["version"] == 3 and b["kind"] == "rollback" and b["source_version"] == 1 and b["message"] == "pool too big"
    v1 = cp.call("GET", "/v1/versions/1")[2]
    v3 = cp.call("GET", "/v1/versions/3")[2]
    assert v3["document"] == v1["document"] and v3["hash"] == v1["hash"]
    events = cp.call("GET", "/v1/events")[2]["events"]
    assert events[0]["action"] == "rollback" and events[0]["actor"] == "ops" and events[0]["version"] == 3
    assert events[0]["message"] == "pool too big"
    # rollback to a tag
    expect(put(cp, fleet("debug", conns=700)), 201)                       # 4
    s, _, b = expect(cp.call("POST", "/v1/rollback", {"to": "stable"}, headers={"Pathway-Message": "back to stable"}), 201)
    assert b["version"] == 5 and b["source_version"] == 1 and b["message"] == "back to stable"
    assert cp.call("GET", "/v1/config")[1]["pathway-hash"] == v1["hash"]
    # default message says what happened
    expect(put(cp, fleet("warn")), 201)                                   # 6
    s, _, b = expect(cp.call("POST", "/v1/rollback", {"to": 2}), 201)
    assert b["message"] == "rollback to version 2"
    # to the active document: no new version
    s, _, b = expect(cp.call("POST", "/v1/rollback", {"to": 2}), 200)
    assert b["created"] is False and b["version"] == 7
    # bad targets and bodies
    expect(cp.call("POST", "/v1/rollback", {"to": 99}), 404)
    expect(cp.call("POST", "/v1/rollback", {"to": "nosuchtag"}), 404)
    for body in ({}, {"to": 0}, {"to": "12"}, {"to": 1.5}, {"to": [1]}, {"to": 1, "why": "x"}, {"to": 1, "message": 3}):
        expect(cp.call("POST", "/v1/rollback", body), 400)
    expect(cp.call("POST", "/v1/rollback", "{", ctype="application/json"), 400)
    expect(cp.call("POST", "/v1/rollback", '{"to": 1}', ctype="text/plain"), 415)
    expect(cp.call("POST", "/v1/rollback", {"to": 1, "message": "a"}, headers={"Pathway-Message": "b"}), 400)
    kinds = [v["kind"] for v in cp.call("GET", "/v1/versions")[2]["versions"]]
    assert kinds == ["rollback", "apply", "rollback", "apply", "rollback", "apply", "apply"], kinds
    # filters: by kind and author, paged within the filter; events by action and actor
    s, _, b = expect(cp.call("GET", "/v1/versions?kind=rollback&limit=2"), 200)
    assert [v["version"] for v in b["versions"]] == [7, 5] and b["next_before"] == 5, b
    s, _, b = expect(cp.call("GET", "/v1/versions?kind=rollback&limit=2&before=5"), 200)
    assert [v["version"] for v in b["versions"]] == [3], b
    s, _, b = expect(cp.call("GET", "/v1/versions?author=ops&kind=apply"), 200)
    assert [v["version"] for v in b["versions"]] == [6, 4, 2, 1], b
    assert expect(cp.call("GET", "/v1/versions?author=nobody"), 200)[2]["versions"] == []
    s, _, b = expect(cp.call("GET", "/v1/versions?kind=revert"), 400)
    assert "kind" in b["error"] and "rollback" in b["error"], b
    expect(cp.call("GET", "/v1/versions?author="), 400)
    s, _, b = expect(cp.call("GET", "/v1/events?action=tag"), 200)
    assert [e["action"] for e in b["events"]] == ["tag"], b
    s, _, b = expect(cp.call("GET", "/v1/events?actor=ops&action=rollback", token=VIEWER), 200)
    assert [e["version"] for e in b["events"]] == [7, 5, 3], b
    s, _, b = expect(cp.call("GET", "/v1/events?action=reboot"), 400)
    assert "action" in b["error"], b


@pwtest.test
def test_tags():
    cp = ControlPlane()
    expect(cp.call("PUT", "/v1/tags/stable", {"version": 1}), 404)  # no such version yet
    expect(put(cp, fleet()), 201)
    expect(put(cp, fleet("warn")), 201)
    s, _, b = expect(cp.call("PUT", "/v1/tags/stable", {"version": 1}), 200)
    assert b["name"] == "stable" and b["version"] == 1 and b["author"] == "ops"
    s, _, b = expect(cp.call("PUT", "/v1/tags/stable", {"version": 2, "message": "promote"}), 200)
    assert b["version"] == 2 and [h["version"] for h in b["history"]] == [2, 1]
    expect(cp.call("PUT", "/v1/tags/conservative", {"version": 1}), 200)
    s, _, b = expect(cp.call("GET", "/v1/tags", token=VIEWER), 200)
    assert [(t["name"], t["version"]) for t in b["tags"]] == [("conservative", 1), ("stable", 2)]
    s, _, b = expect(cp.call("GET", "/v1/tags/stable", token=VIEWER), 200)
    assert b["version"] == 2 and b["message"] == "promote"
    expect(cp.call("GET", "/v1/tags/nope"), 404)
    for bad in ("123", "a%20b", "a%2Fb", "x" * 65):
        expect(cp.call("GET", f"/v1/tags/{bad}"), 400)
        expect(cp.call("PUT", f"/v1/tags/{bad}", {"version": 1}), 400)
    for body in ({}, {"version": "1"}, {"version": 0}, {"version": 1, "x": 1}, [1]):
        expect(cp.call("PUT", "/v1/tags/stable", body), 400)
    expect(cp.call("PUT", "/v1/tags/stable", {"version": 9}), 404)
    expect(cp.call("PUT", "/v1/tags/stable", {"version": 1}, token=VIEWER), 403)
    actions = [e["action"] for e in cp.call("GET", "/v1/events")[2]["events"]]
    assert actions == ["tag", "tag", "tag", "apply", "apply"], actions


@pwtest.test
def test_tag_delete():
    cp = ControlPlane()
    expect(put(cp, fleet()), 201)
    expect(put(cp, fleet("warn")), 201)
    expect(cp.call("PUT", "/v1/tags/stable", {"version": 1}), 200)
    expect(cp.call("PUT", "/v1/tags/stable", {"version": 2}), 200)
    expect(cp.call("PUT", "/v1/tags/canary", {"version": 2}), 200)
    expect(cp.call("DELETE", "/v1/tags/stable", token=VIEWER), 403)
    expect(cp.call("DELETE", "/v1/tags/nope"), 404)
    expect(cp.call("DELETE", "/v1/tags/123"), 400)
    s, _, b = expect(cp.call("DELETE", "/v1/tags/stable", headers={"Pathway-Message": "retired"}), 200)
    assert b == {"name": "stable", "version": 2, "deleted": True}, b
    expect(cp.call("GET", "/v1/tags/stable"), 404)
    expect(cp.call("DELETE", "/v1/tags/stable"), 404)
    assert [t["name"] for t in cp.call("GET", "/v1/tags")[2]["tags"]] == ["canary"]
    s, _, b = expect(cp.call("POST", "/v1/rollback", {"to": "stable"}), 404)
    assert "stable" in b["error"], b
    ev = cp.call("GET", "/v1/events")[2]["events"][0]
    assert ev["action"] == "tag_delete" and ev["version"] == 2 and ev["actor"] == "ops" and ev["message"] == "stable: retired", ev
    # the versions are untouched, and the tag can come back with its history (deletion included)
    assert cp.call("GET", "/v1/versions")[2]["active_version"] == 2
    expect(cp.call("PUT", "/v1/tags/stable", {"version": 1}), 200)
    s, _, t = expect(cp.call("GET", "/v1/tags/stable"), 200)
    assert t["version"] == 1 and [h.get("deleted", False) for h in t["history"]] == [False, True, False, False], t
    # history stays append-only: the deletion survives a restart as a row, not as a gap
    cp.restart()
    s, _, t = expect(cp.call("GET", "/v1/tags/stable"), 200)
    assert len(t["history"]) == 4
    assert cp.stop() == 0


@pwtest.test
def test_forget_dataplane():
    cp = ControlPlane(heartbeat="1s")
    expect(put(cp, fleet()), 201)
    expect(cp.call("POST", "/v1/dataplanes/dp-1/status", {"version": 1, "applied": True}, token=DATAPLANE), 200)
    expect(cp.call("DELETE", "/v1/dataplanes/dp-1", token=VIEWER), 403)
    expect(cp.call("DELETE", "/v1/dataplanes/dp-1", token=DATAPLANE), 403)
    expect(cp.call("DELETE", "/v1/dataplanes/nobody"), 404)
    expect(cp.call("DELETE", "/v1/dataplanes/bad%20id"), 400)
    # connected: refused, saying why
    s, _, b = expect(cp.call("DELETE", "/v1/dataplanes/dp-1"), 409)
    assert "connected" in b["error"] and "dp-1" in b["error"], b
    import time
    time.sleep(1.3)
    assert cp.call("GET", "/v1/dataplanes/dp-1")[2]["state"] == "disconnected"
    s, _, b = expect(cp.call("DELETE", "/v1/dataplanes/dp-1"), 200)
    assert b == {"id": "dp-1", "forgotten": True}, b
    expect(cp.call("GET", "/v1/dataplanes/dp-1"), 404)
    assert cp.call("GET", "/v1/dataplanes")[2]["dataplanes"] == []
    ev = cp.call("GET", "/v1/events")[2]["events"][0]
    assert ev["action"] == "forget" and ev["message"] == "dp-1" and ev["actor"] == "ops", ev
    # it calls again: known anew
    expect(cp.call("GET", "/v1/dataplanes/dp-1/config?version=0", token=DATAPLANE), 200)
    assert cp.call("GET", "/v1/dataplanes/dp-1")[2]["delivered_version"] == 1
    assert cp.stop() == 0


@pwtest.test
def test_dataplanes_status_and_states():
    cp = ControlPlane()
    expect(put(cp, fleet()), 201)  # 1
    # first poll: version 1 at once
    s, h, b = expect(cp.call("GET", "/v1/dataplanes/dp-1/config?version=0", token=DATAPLANE), 200)
    assert b["version"] == 1 and h["etag"] == '"1"' and b["document"]["services"][0]["id"] == "eth"
    dp = cp.call("GET", "/v1/dataplanes/dp-1", token=VIEWER)[2]
    assert dp["state"] == "applying" and dp["delivered_version"] == 1
    # ACK with labels and stats
    s, _, b = expect(cp.call("POST", "/v1/dataplanes/dp-1/status",
                             {"version": 1, "applied": True, "labels": {"region": "eu"}, "stats": {"requests": 5}},
                             token=DATAPLANE), 200)
    assert b["state"] == "synced" and b["applied_version"] == 1 and b["active_version"] == 1
    # nothing new: 304 at once without wait
    expect(cp.call("GET", "/v1/dataplanes/dp-1/config?version=1", token=DATAPLANE), 304)
    # a new version: stale until fetched, applying until reported
    expect(put(cp, fleet("warn")), 201)  # 2
    assert cp.call("GET", "/v1/dataplanes/dp-1")[2]["state"] == "stale"
    expect(cp.call("GET", "/v1/dataplanes/dp-1/config?version=1", token=DATAPLANE), 200)
    assert cp.call("GET", "/v1/dataplanes/dp-1")[2]["state"] == "applying"
    # NACK: rejected, with its error
    nack = {"version": 2, "applied": False, "error": "services[0].endpoints[0].tls.ca_file: cannot read"}
    s, _, b = expect(cp.call("POST", "/v1/dataplanes/dp-1/status", nack, token=DATAPLANE), 200)
    assert b["state"] == "rejected" and b["rejected_version"] == 2 and "ca_file" in b["error"]
    # the rejected version is not resent, even to a poll that names an older version: it waits
    # (here: no wait, so 304) as if nothing were new
    expect(cp.call("GET", "/v1/dataplanes/dp-1/config?version=1", token=DATAPLANE), 304)
    expect(cp.call("POST", "/v1/dataplanes/dp-1/status", nack, token=DATAPLANE), 200)  # heartbeat
    expect(cp.call("GET", "/v1/dataplanes/dp-1/config?version=1&wait=200ms", token=DATAPLANE), 304)
    s, _, b = expect(cp.call("GET", "/v1/dataplanes", token=VIEWER), 200)
    assert b["active_version"] == 2
    (d,) = b["dataplanes"]
    assert d["id"] == "dp-1" and d["state"] == "rejected" and d["labels"] == {"region": "eu"} and d["stats"] == {"requests": 5}
    assert d["applied_version"] == 1
    # a restarted dataplane reports the version it runs: the NACK stays shown, and its next poll
    # may try the rejected version once more (the operator may have fixed the cause)
    expect(cp.call("POST", "/v1/dataplanes/dp-1/status", {"version": 1, "applied": True}, token=DATAPLANE), 200)
    assert cp.call("GET", "/v1/dataplanes/dp-1")[2]["state"] == "rejected"
    s, _, b = expect(cp.call("GET", "/v1/dataplanes/dp-1/config?version=1", token=DATAPLANE), 200)
    assert b["version"] == 2
    # handed out again for that one retry: applying (the NACK and its error still shown) until it reports
    d = cp.call("GET", "/v1/dataplanes/dp-1")[2]
    assert d["state"] == "applying" and d["rejected_version"] == 2 and "ca_file" in d["error"], d
    expect(cp.call("POST", "/v1/dataplanes/dp-1/status", nack, token=DATAPLANE), 200)
    assert cp.call("GET", "/v1/dataplanes/dp-1")[2]["state"] == "rejected"
    expect(cp.call("GET", "/v1/dataplanes/dp-1/config?version=1", token=DATAPLANE), 304)
    # a newer version is sent
    expect(put(cp, fleet("error")), 201)  # 3
    assert cp.call("GET", "/v1/dataplanes/dp-1")[2]["state"] == "stale"
    s, _, b = expect(cp.call("GET", "/v1/dataplanes/dp-1/config?version=2", token=DATAPLANE), 200)
    assert b["version"] == 3
    expect(cp.call("POST", "/v1/dataplanes/dp-1/status", {"version": 3, "applied": True}, token=DATAPLANE), 200)
    d = cp.call("GET", "/v1/dataplanes/dp-1")[2]
    assert d["state"] == "synced" and "error" not in d and "rejected_version" not in d
    # the audit log has each ACK and NACK once, not every heartbeat
    acts = [(e["action"], e["actor"], e["version"]) for e in cp.call("GET", "/v1/events")[2]["events"] if e["action"] in ("ack", "nack")]
    assert acts == [("ack", "dp-1", 3), ("nack", "dp-1", 2), ("ack", "dp-1", 1)], acts
    # bad inputs
    expect(cp.call("GET", "/v1/dataplanes/nope"), 404)
    expect(cp.call("GET", "/v1/dataplanes/a%20b"), 400)
    expect(cp.call("GET", "/v1/dataplanes/a%20b/config", token=DATAPLANE), 400)
    expect(cp.call("GET", "/v1/dataplanes/dp-1/config?version=x", token=DATAPLANE), 400)
    expect(cp.call("GET", "/v1/dataplanes/dp-1/config?version=-1", token=DATAPLANE), 400)
    expect(cp.call("GET", "/v1/dataplanes/dp-1/config?wait=forever", token=DATAPLANE), 400)
    expect(cp.call("GET", "/v1/dataplanes/dp-1/config?colour=1", token=DATAPLANE), 400)
    for body in ({}, {"version": 1}, {"version": 1, "applied": "yes"}, {"version": 1, "applied": False},
                 {"version": -1, "applied": True}, {"version": 1, "applied": True, "extra": 1},
                 {"version": 1, "applied": True, "labels": {"a": 1}}, {"version": 1, "applied": True, "stats": 5},
                 {"version": 1, "applied": True, "error": "x"}, {"version": 1e30, "applied": True}):
        expect(cp.call("POST", "/v1/dataplanes/dp-1/status", body, token=DATAPLANE), 400)
    expect(cp.call("POST", "/v1/dataplanes/dp-1/status", {"version": 99, "applied": True}, token=DATAPLANE), 404)
    expect(cp.call("POST", "/v1/dataplanes/dp-1/status", "{", ctype="application/json", token=DATAPLANE), 400)
    expect(cp.call("POST", "/v1/dataplanes/dp-1/status", "x", ctype="text/plain", token=DATAPLANE), 415)


@pwtest.test
def test_disconnected_after_missed_heartbeats():
    cp = ControlPlane(heartbeat="1s")
    expect(put(cp, fleet()), 201)
    expect(cp.call("POST", "/v1/dataplanes/dp-9/status", {"version": 1, "applied": True}, token=DATAPLANE), 200)
    assert cp.call("GET", "/v1/dataplanes/dp-9")[2]["state"] == "synced"
    import time
    time.sleep(1.3)
    assert cp.call("GET", "/v1/dataplanes/dp-9")[2]["state"] == "disconnected"
    assert 'pathway_control_dataplanes{state="disconnected"} 1' in cp.request("GET", "/metrics")[2].decode()
    expect(cp.call("POST", "/v1/dataplanes/dp-9/status", {"version": 1, "applied": True}, token=DATAPLANE), 200)
    assert cp.call("GET", "/v1/dataplanes/dp-9")[2]["state"] == "synced"


@pwtest.test
def test_routes_served_match_the_binary():
    cp = ControlPlane()
    out = subprocess.run([pwtest.binary("pathway-control"), "--routes"], capture_output=True, text=True, check=True).stdout
    routes = [line.split(" ", 1) for line in out.strip().splitlines()]
    assert len(routes) == 28, routes
    for method, path in routes:
        concrete = path.replace("{n}", "1").replace("{name}", "stable").replace("{id}", "dp-1")
        s, _, b = cp.call(method, concrete, "{}" if method != "GET" else None, ctype="application/json")
        assert not (s == 404 and b["error"] == "no such route"), (method, path)
        assert s != 405, (method, path)


@pwtest.test
def test_garbage_never_500():
    """Every route, every token, odd methods, paths, queries, headers and bodies: always a 4xx
    (or a 2xx/304) with a JSON error body, never a 5xx, and the server stays up."""
    import random
    rnd = random.Random(4)
    cp = ControlPlane(max_body="16KiB")
    expect(put(cp, fleet()), 201)
    out = subprocess.run([pwtest.binary("pathway-control"), "--routes"], capture_output=True, text=True, check=True).stdout
    routes = [line.split(" ", 1) for line in out.strip().splitlines()]
    bodies = [b"", b"{", b"[]", b"null", b"\xff\xfe\x00", b'{"to": {"a": 1}}', b'{"version": 1e999}', b"[" * 5000 + b"]" * 5000,
              b'{"a":' * 3000 + b"1" + b"}" * 3000, b"a: &a [*a]", b"a: &x [1]\nb: [*x, *x, *x]", b'{"log": {"level": 12}}',
              b"\t\n   ", b'{"services": [{"id": "' + b"x" * 10000 + b'"}]}', b'{"version": 1, "applied": true, "stats": ' +
              b'{"a": [' * 100 + b"]}" * 100 + b"}"]
    # (not malformed HTTP itself: h2o answers a request it cannot parse with a fixed text/plain 400)
    ctypes = [None, "application/json", "application/yaml", "application/merge-patch+json", "text/plain", "application/json; x=\"",
              "*/*"]
    queries = ["", "?", "?&&", "?version=1&wait=1ms", "?limit=-1", "?before=1e9", "?message=%", "?from=%41", "?wait=99999999999s",
               "?version=99999999999999999999"]
    answered = 0
    for i in range(600):
        method, path = rnd.choice(routes)
        if rnd.random() < 0.1:
            method = rnd.choice(["DELETE", "OPTIONS", "POST", "PUT", "GET", "PATCH"])
        concrete = path.replace("{n}", rnd.choice(["1", "0", "x", "99999999999999999", "2"]))
        concrete = concrete.replace("{name}", rnd.choice(["stable", "1", "a.b", "%00"])).replace("{id}", rnd.choice(["dp-1", "..", "x" * 70]))
        headers = {}
        ct = rnd.choice(ctypes)
        if ct is not None:
            headers["Content-Type"] = ct
        if rnd.random() < 0.2:
            headers["If-Match"] = rnd.choice(['"1"', "*", "W/", '"', "9" * 40])
        if rnd.random() < 0.1:
            headers["Accept"] = "application/yaml"
        token = rnd.choice([ADMIN, ADMIN, VIEWER, DATAPLANE, None, "x" * 5000])
        body = rnd.choice(bodies) if method != "GET" else None
        try:
            status, hdrs, data = cp.request(method, concrete + rnd.choice(queries), body, token=token, headers=headers, timeout=10)
        except (ConnectionError, OSError):
            continue  # h2o may close on a body it refuses before reading it
        answered += 1
        assert status < 500, (method, concrete, status, data[:200])
        if status >= 400:
            assert hdrs.get("content-type", "").startswith("application/json"), (method, concrete, status, hdrs, data[:200])
            assert isinstance(json.loads(data)["error"], str)
    assert answered >= 500, answered
    assert cp.proc.alive()
    assert cp.call("GET", "/healthz", token=None)[0] == 200
    assert cp.stop() == 0


@pwtest.test
def test_seed_and_example_config():
    directory = __import__("tempfile").mkdtemp(prefix="pw-cp-seed-")
    cp_util._made_dirs.append(directory)
    seed = pwtest.write_file(directory, "fleet.yaml", "log:\n  level: warn\nservices:\n  - id: eth\n    endpoints:\n"
                                                    "      - url: http://127.0.0.1:8545\n")
    cp = ControlPlane(seed=seed, directory=directory)
    s, _, b = expect(cp.call("GET", "/v1/versions/1"), 200)
    assert b["author"] == "seed" and b["document"]["log"]["level"] == "warn"
    cp.stop()
    # --seed on a database that has versions changes nothing
    pwtest.write_file(directory, "fleet.yaml", "log:\n  level: error\nservices: []\n")
    cp.start()
    assert cp.call("GET", "/v1/versions")[2]["active_version"] == 1
    cp.stop()
    # a seed that is not a fleet document: exit 1 with the errors
    bad = pwtest.write_file(directory, "bad.yaml", "threads: 2\n")
    r = subprocess.run([pwtest.binary("pathway-control"), "-c", cp.config, "--database", os.path.join(directory, "new.db"),
                        "--seed", bad], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "threads" in r.stderr, r.stderr
    # a bad config file: exit 1, every error named
    badcfg = pwtest.write_file(directory, "badcp.yaml", "listen: nowhere\ntokens: []\ncolour: 1\n")
    r = subprocess.run([pwtest.binary("pathway-control"), "-c", badcfg], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "listen:" in r.stderr and "tokens:" in r.stderr and "colour:" in r.stderr, r.stderr
    # examples/controlplane.yaml runs as it is (with its example tokens)
    port = pwtest.free_port()
    p = pwtest.Proc([pwtest.binary("pathway-control"), "-c", os.path.join(pwtest.SOURCE_DIR, "examples", "controlplane.yaml"),
                     "--listen", f"127.0.0.1:{port}", "--database", os.path.join(directory, "example.db")],
                    name="pathway-control-example", cwd="/")
    pwtest.wait_port(port)
    with open(os.path.join(pwtest.SOURCE_DIR, "examples", "tokens", "admin.token")) as f:
        token = f.read().strip()
    s, _, _ = pwtest.request(port, "GET", "/v1/versions", headers={"Authorization": "Bearer " + token})
    assert s == 200
    assert p.stop() == 0


if __name__ == "__main__":
    pwtest.main()
