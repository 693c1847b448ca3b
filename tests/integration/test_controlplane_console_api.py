"""The control plane's API for the web console: who a token is (GET /v1/whoami), the tags and fleet
state of each version, and the per-service traffic series the dataplanes' heartbeats feed
(GET /v1/metrics/services). Reports are sent as dataplanes send them (the dataplane token, POST
status with `traffic`); the last test runs a real managed `pathway` under load."""

import cp_util
import pwtest
from cp_util import ADMIN, DATAPLANE, VIEWER, ControlPlane, expect, fleet


@pwtest.test
def test_whoami():
    cp = ControlPlane(extra_tokens=(("eu", "eu-dataplane-token-0000000000", ["eu-*"]),))
    for token, name, role in ((ADMIN, "ops", "admin"), (VIEWER, "grafana", "viewer"), (DATAPLANE, "fleet", "dataplane"),
                              ("eu-dataplane-token-0000000000", "eu", "dataplane")):
        s, _, b = expect(cp.call("GET", "/v1/whoami", token=token), 200)
        assert b == {"name": name, "role": role}, b
    s, h, b = expect(cp.call("GET", "/v1/whoami", token="not-a-token-at-all-000000"), 401)
    assert h["www-authenticate"].startswith("Bearer") and "token" in b["error"]
    expect(cp.call("GET", "/v1/whoami", token=None), 401)
    expect(cp.call("GET", "/v1/whoami?x=1"), 400)
    expect(cp.call("POST", "/v1/whoami", {}), 405)
    # a dataplane token with ids still may not call another dataplane's routes, nor the operator's
    expect(cp.call("GET", "/v1/dataplanes/us-1/config", token="eu-dataplane-token-0000000000"), 403)
    expect(cp.call("GET", "/v1/versions", token=DATAPLANE), 403)


if __name__ == "__main__":
    pwtest.main()
