"""pathwayctl against a scripted control plane on 127.0.0.1 that records every request: the exact
calls `tag delete` and `dataplanes forget` make (DELETE /v1/tags/{name}, DELETE
/v1/dataplanes/{id}), and what --wait and status make of a `drifted` dataplane, a 409 and a paged
dataplane list. The same commands run against the real control plane in
test_pathwayctl_cp_api.py."""

import json

import pwtest
from pwtest import test
from ctl_util import TOKEN, Mock, ctl, fixed

DOC = {"log": {"level": "info"}, "services": [{"id": "eth", "endpoints": [{"url": "http://127.0.0.1:8545"}]}]}


def version(n, doc=DOC, kind="patch"):
    return {"version": n, "created_at": "2026-12-01T10:00:00.000Z", "author": "ops", "message": "", "kind": kind,
            "source_version": n - 1 if n > 1 else None, "hash": f"{n:064x}", "document": doc}



@test
def tag_delete_request():
    mock = Mock({
        ("DELETE", "/v1/tags/stable"): fixed(200, {"name": "stable", "version": 3, "deleted": True}),
        ("DELETE", "/v1/tags/stabel"): fixed(404, {"error": "tag 'stabel' does not exist"}),
        ("GET", "/v1/tags"): fixed(200, {"tags": [{"name": "stable", "version": 3}, {"name": "canary", "version": 4}]}),
        ("PUT", "/v1/tags/delete"): fixed(200, {"name": "delete", "version": 5}),
    })
    try:
        rc, out, err = ctl(mock, "tag", "delete", "stable", "-m", "retired at 10:00")
        assert rc == 0 and out == "deleted tag stable (it pointed at version 3)\n", (rc, out, err)
        method, path, headers, body = mock.requests[-1]
        assert (method, path) == ("DELETE", "/v1/tags/stable?message=retired%20at%2010%3A00"), mock.requests
        assert headers.get("Authorization") == f"Bearer {TOKEN}" and body == b"", headers

        # an unknown tag: did-you-mean from the tag list
        rc, out, err = ctl(mock, "tag", "delete", "stabel")
        assert rc == 1 and 'no tag "stabel"; did you mean "stable"?' in err, (rc, err)
        assert mock.calls()[-2:] == [("DELETE", "/v1/tags/stabel"), ("GET", "/v1/tags")], mock.calls()

        # `tag delete N` points a tag named "delete" at version N: a move, not a deletion
        n = len(mock.requests)
        rc, out, err = ctl(mock, "tag", "delete", "5")
        assert rc == 0 and out == "tag delete -> version 5\n", (rc, out, err)
        assert mock.calls()[n:] == [("PUT", "/v1/tags/delete")] and json.loads(mock.requests[-1][3]) == {"version": 5}
        rc, out, err = ctl(mock, "tag", "delete", "stable", "--json")
        assert rc == 2, (rc, err)
    finally:
        mock.close()


@test
def dataplanes_forget_request():
    mock = Mock({
        ("DELETE", "/v1/dataplanes/dp-9"): fixed(200, {"id": "dp-9", "forgotten": True}),
        ("DELETE", "/v1/dataplanes/dp-1"): fixed(409, {"error": "dataplane dp-1 is connected; stop it first"}),
        ("DELETE", "/v1/dataplanes/dp-2x"): fixed(404, {"error": "no dataplane dp-2x"}),
        ("GET", "/v1/dataplanes"): fixed(200, {"active_version": 1, "next_after": None, "dataplanes": [
            {"id": "dp-1", "state": "synced", "applied_version": 1}, {"id": "dp-2", "state": "synced", "applied_version": 1}]}),
    })
    try:
        rc, out, err = ctl(mock, "dataplanes", "forget", "dp-9")
        assert rc == 0 and out == "forgot dataplane dp-9 (it is listed again when it next calls)\n", (rc, out, err)
        method, path, headers, body = mock.requests[-1]
        assert (method, path, body) == ("DELETE", "/v1/dataplanes/dp-9", b"") and headers["Authorization"] == f"Bearer {TOKEN}"

        rc, out, err = ctl(mock, "dataplanes", "forget", "dp-1")
        assert rc == 1 and "rejected (409): dataplane dp-1 is connected; stop it first" in err, (rc, err)
        rc, out, err = ctl(mock, "dataplanes", "forget", "dp-2x")
        assert rc == 1 and 'no dataplane "dp-2x"; did you mean "dp-2"?' in err, (rc, err)

        n = len(mock.requests)
        for args in (("dataplanes", "forget"), ("dataplanes", "dp-1"), ("dataplanes", "forget", "a", "b")):
            rc, out, err = ctl(mock, *args)
            assert rc == 2, (args, rc, err)
        assert len(mock.requests) == n  # usage errors send nothing
    finally:
        mock.close()


DRIFTED = {"id": "dp-1", "state": "drifted", "applied_version": 6, "delivered_version": 6,
           "reported_hash": "0123456789abcdef" * 4, "expected_hash": "fedcba9876543210" * 4, "labels": {}}


def config_routes(dataplanes):
    """Version 5 active; a PATCH stores version 6; GET /v1/dataplanes answers dataplanes(query)."""
    state = {"active": 5}

    def get_config(q, b):
        return 200, DOC, {"ETag": f'"{state["active"]}"'}

    def patch_config(q, b):
        state["active"] = 6
        v = version(6)
        del v["document"]
        v["created"] = True
        return 201, v, {"ETag": '"6"'}

    def versions(q, b):
        return 200, {"active_version": state["active"], "versions": [version(state["active"])], "next_before": None}, {}

    return {
        ("GET", "/v1/config"): get_config,
        ("PATCH", "/v1/config"): patch_config,
        ("GET", "/v1/versions"): versions,
        ("GET", "/v1/versions/6"): fixed(200, version(6, {**DOC, "log": {"level": "warn"}})),
        ("GET", "/v1/dataplanes"): lambda q, b: (200, dataplanes(q), {}),
    }


@test
def drift_fails_wait_and_status():
    """A dataplane that ACKed the new version but serves another document: --wait exits 1 with both
    hashes; status exits 1 and shows them."""
    mock = Mock(config_routes(lambda q: {"active_version": 6, "next_after": None, "dataplanes": [
        DRIFTED, {"id": "dp-2", "state": "synced", "applied_version": 6, "labels": {}}]}))
    try:
        rc, out, err = ctl(mock, "set", "log.level=warn", "--wait=5s")
        assert rc == 1, (rc, out, err)
        assert "created version 6" in out, out
        assert "version 6 failed on 1 of 2 connected dataplanes:" in err, err
        assert "  dp-1: drifted: serves hash 0123456789ab, version 6 has fedcba987654" in err, err

        rc, out, err = ctl(mock, "status")
        assert rc == 1 and "dataplanes     2 (1 synced, 1 drifted)" in out, (rc, out, err)
        row = [ln for ln in out.splitlines() if ln.startswith("dp-1")][0]
        assert row.split()[:3] == ["dp-1", "drifted", "6"], row
        assert "drifted: serves hash 0123456789ab, version 6 has fedcba987654" in row, row
        rc, out, err = ctl(mock, "dataplanes")
        assert rc == 0 and "version 6 has fedcba987654" in out, (rc, out)
    finally:
        mock.close()


@test
def wait_and_status_read_every_page():
    """GET /v1/dataplanes is paged: --wait and status follow next_after, so a dataplane on page 2
    counts."""
    def pages(q):
        if "after" not in q:
            return {"active_version": 6, "next_after": "dp-1",
                    "dataplanes": [{"id": "dp-1", "state": "synced", "applied_version": 6, "labels": {}}]}
        assert q["after"] == ["dp-1"], q
        return {"active_version": 6, "next_after": None,
                "dataplanes": [{"id": "dp-2", "state": "rejected", "applied_version": 5, "rejected_version": 6,
                                "error": "log.level: nope", "labels": {}}]}
    mock = Mock(config_routes(pages))
    try:
        rc, out, err = ctl(mock, "set", "log.level=warn", "--wait=5s")
        assert rc == 1 and "  dp-2: rejected version 6: log.level: nope" in err, (rc, out, err)
        assert ("GET", "/v1/dataplanes?limit=1000&after=dp-1") in mock.calls(), mock.calls()
        rc, out, err = ctl(mock, "status")
        assert rc == 1 and "dataplanes     2 (1 synced, 1 rejected)" in out, (rc, out, err)
        assert len(json.loads(ctl(mock, "dataplanes", "--json")[1])["dataplanes"]) == 2
    finally:
        mock.close()


if __name__ == "__main__":
    pwtest.main()
