"""Secrets never reach a viewer (issue 9): a key planted in an endpoint URL's path, query and
userinfo, and in an endpoint header, appears in no response a viewer token gets (documents in
JSON and YAML, versions, diffs, tags, events, dataplanes and their errors, metrics); an admin token
sees them whole."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pwtest  # noqa: E402
from cp_util import ADMIN, DATAPLANE, VIEWER, ControlPlane, expect  # noqa: E402

KEY_PATH = "PATHKEY5f3a9c"
KEY_QUERY = "QUERYKEY8b21d"
KEY_USER = "USERKEY41c7e"
KEY_HEADER = "HEADERKEY9d02a"


def document(level="info"):
    ep = {"url": f"https://user:{KEY_USER}@eth.provider.example/v2/{KEY_PATH}?apikey={KEY_QUERY}",
          "headers": {"X-Api-Key": KEY_HEADER}}
    return {"log": {"level": level},
            "services": [{"id": "eth", "endpoints": [ep, {"url": "http://127.0.0.1:8545/"}]},
                         {"id": "poly", "endpoints": [{"url": f"http://127.0.0.1:8547/rpc/{KEY_PATH}"}]}]}


def viewer_surfaces(cp):
    """Every GET a viewer may make, with the bodies as text."""
    out = {}
    paths = ["/v1/config", "/v1/versions", "/v1/versions/1", "/v1/versions/2", "/v1/versions/3", "/v1/versions/2/diff",
             "/v1/versions/3/diff", "/v1/versions/3/diff?from=0", "/v1/versions/2/diff?from=0", "/v1/tags", "/v1/tags/stable",
             "/v1/events", "/v1/dataplanes", "/v1/dataplanes/dp-1", "/v1/dataplanes/dp-2", "/metrics"]
    for p in paths:
        s, h, body = cp.request("GET", p, token=VIEWER)
        assert s == 200, (p, s, body)
        out[p] = body.decode()
    s, h, body = cp.request("GET", "/v1/config", token=VIEWER, headers={"Accept": "application/yaml"})
    assert s == 200 and h["content-type"] == "application/yaml", (s, h)
    out["/v1/config (YAML)"] = body.decode()
    return out


@pwtest.test
def test_viewer_never_sees_endpoint_secrets():
    cp = ControlPlane()
    keys = [KEY_PATH, KEY_QUERY, KEY_USER, KEY_HEADER]
    # version 1 without secrets, 2 with them (also in its message), 3 a patch of 2
    expect(cp.call("PUT", "/v1/config", {"log": {"level": "info"}, "services": [
        {"id": "eth", "endpoints": [{"url": "http://127.0.0.1:8545/"}]}]}), 201)
    expect(cp.call("PUT", "/v1/config", document(),
                   headers={"Pathway-Message": f"moved eth to https://eth.provider.example/v2/{KEY_PATH}?apikey={KEY_QUERY}"}), 201)
    expect(cp.call("PATCH", "/v1/config", {"log": {"level": "warn"}}), 201)
    expect(cp.call("PUT", "/v1/tags/stable", {"version": 2, "message": f"known good: http://x.example/{KEY_PATH}"}), 200)
    # a dataplane's NACK that quotes the URL
    expect(cp.call("POST", "/v1/dataplanes/dp-1/status",
                   {"version": 3, "applied": False,
                    "error": f"services[0].endpoints[0]: cannot connect to https://user:{KEY_USER}@eth.provider.example/v2/{KEY_PATH}?apikey={KEY_QUERY}"},
                   token=DATAPLANE), 200)
    # free text a dataplane sends along: labels and heartbeat stats
    expect(cp.call("POST", "/v1/dataplanes/dp-2/status",
                   {"version": 3, "applied": True, "labels": {"upstream": f"https://eth.provider.example/v2/{KEY_PATH}"},
                    "stats": {"last_error": f"GET https://user:{KEY_USER}@eth.provider.example/?k={KEY_QUERY}: timeout",
                              "ws_error": f"upgrade wss://eth.provider.example/ws/{KEY_PATH} refused",
                              "nested": [{"url": f"http://h.example/{KEY_PATH}"}]}},
                   token=DATAPLANE), 200)

    for where, text in viewer_surfaces(cp).items():
        for key in keys:
            assert key not in text, f"{key} leaked to a viewer in {where}: {text[:600]}"
    # what the viewer gets is still useful: the host, and where the secret was
    s, _, doc = expect(cp.call("GET", "/v1/config", token=VIEWER), 200)
    url = doc["services"][0]["endpoints"][0]["url"]
    assert url.startswith("https://") and "eth.provider.example" in url and "<redacted>" in url, url
    assert doc["services"][0]["endpoints"][1]["url"] == "http://127.0.0.1:8545/", doc  # nothing to hide
    assert url == "https://<redacted>@eth.provider.example/<redacted>?<redacted>", url
    assert doc["services"][0]["endpoints"][0]["headers"] == {"X-Api-Key": "<redacted>"}, doc
    # the diff of the version that brought the secrets shows that the URL changed
    s, _, d = expect(cp.call("GET", "/v1/versions/2/diff", token=VIEWER), 200)
    assert any("/services/0/endpoints" in op["path"] for op in d["patch"]), d
    s, _, dp = expect(cp.call("GET", "/v1/dataplanes/dp-1", token=VIEWER), 200)
    assert "eth.provider.example" in dp["error"] and "<redacted>" in dp["error"], dp
    s, _, dp = expect(cp.call("GET", "/v1/dataplanes/dp-2", token=VIEWER), 200)
    assert dp["labels"]["upstream"] == "https://eth.provider.example/<redacted>", dp
    assert dp["stats"]["last_error"] == "GET https://<redacted>@eth.provider.example/?<redacted> timeout", dp
    assert dp["stats"]["ws_error"] == "upgrade wss://eth.provider.example/<redacted> refused", dp

    # an admin sees everything whole
    admin = "".join(cp.request("GET", p, token=ADMIN)[2].decode() for p in
                    ("/v1/config", "/v1/versions/2", "/v1/versions", "/v1/events", "/v1/dataplanes/dp-1", "/v1/versions/2/diff",
                     "/v1/dataplanes/dp-2"))
    for key in keys:
        assert key in admin, f"the admin does not see {key}"
    s, _, doc = expect(cp.call("GET", "/v1/config", token=ADMIN), 200)
    assert KEY_PATH in doc["services"][0]["endpoints"][0]["url"]
    assert cp.stop() == 0


if __name__ == "__main__":
    pwtest.main()
