"""Tuning a pool keeps it warm (issue 9): an endpoint's identity is its service, name, URL and TLS
settings, never its pool bounds. Changing max_idle_per_host, max_conns_per_host, idle_timeout or
connect_timeout at runtime applies to the live pool: no reconnects, counters continue."""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dp_util import Pathway, RawUpstream, parallel, wait_for  # noqa: E402
from pwtest import main, test  # noqa: E402

BODY = b'{"jsonrpc":"2.0","id":1,"result":"0x1"}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


def pool(idle, conns=50, idle_timeout="90s", connect_timeout="5s"):
    return (f"pool:\n  max_idle_per_host: {idle}\n  max_conns_per_host: {conns}\n  idle_timeout: {idle_timeout}\n"
            f"  connect_timeout: {connect_timeout}")


@test
def test_pool_bounds_change_keeps_warm_connections():
    # the first 20 requests are answered only once all 20 have arrived: the dataplane must have
    # opened 20 connections to carry them (no timing involved)
    barrier = threading.Barrier(20, timeout=30)

    def script(sock, i):
        if i < 20:
            barrier.wait()
        sock.sendall(ANSWER)
        return True

    up = RawUpstream(script)
    url = f"http://127.0.0.1:{up.port}"
    # one worker: idle connections are per worker, all 20 in one place
    pw = Pathway([("eth", [url], pool(25))], threads=1)

    def endpoint():
        return pw.stats()["services"][0]["endpoints"][0]

    try:
        assert parallel(20, lambda i: pw.rpc("eth")[0]) == [200] * 20
        wait_for(lambda: endpoint()["idle"] == 20, what="20 idle connections")
        assert up.accepted == 20
        assert endpoint()["connects"] == 20 and endpoint()["reuses"] == 0, endpoint()

        # raise max_idle_per_host and tune the three other knobs: the same pool, nothing reconnects
        pw.write(pw.text(services=[("eth", [url], pool(40, conns=60, idle_timeout="120s", connect_timeout="3s"))]))
        st, _, body = pw.reload()
        assert st == 200 and body["changed"], body
        e = endpoint()
        assert e["max_idle_per_host"] == 40 and e["max_conns_per_host"] == 60, e
        assert e["idle"] == 20 and e["open"] == 20 and e["connects"] == 20, e
        for _ in range(5):
            assert pw.rpc("eth")[0] == 200
        assert up.accepted == 20, "raising max_idle_per_host opened new connections"
        assert up.closed == 0
        e = endpoint()
        assert e["connects"] == 20 and e["reuses"] == 5, e

        # lower it to 5: 15 idle connections are closed, 5 stay warm
        pw.write(pw.text(services=[("eth", [url], pool(5, conns=60, idle_timeout="120s", connect_timeout="3s"))]))
        st, _, body = pw.reload()
        assert st == 200 and body["changed"], body
        wait_for(lambda: endpoint()["idle"] == 5, what="idle connections trimmed to 5")
        wait_for(lambda: up.closed == 15, what="the upstream to see 15 connections closed")
        e = endpoint()
        assert e["open"] == 5 and e["closes"] == 15 and e["connects"] == 20 and e["reuses"] == 5, e
        assert pw.rpc("eth")[0] == 200
        assert up.accepted == 20
        assert endpoint()["reuses"] == 6
        metrics = pw.metrics()
        label = f'service="eth",endpoint="127.0.0.1:{up.port}"'
        assert f"pathway_upstream_connects_total{{{label}}} 20\n" in metrics, metrics
        assert f"pathway_upstream_reuses_total{{{label}}} 6\n" in metrics, metrics
        assert f"pathway_upstream_max_idle_connections{{{label}}} 5\n" in metrics, metrics
    finally:
        up.close()


@test
def test_same_url_in_two_services_has_two_pools():
    """Each service's endpoint is its own (own bounds, own series with a service label), even when
    two services point at one URL; their connections still count against one upstream."""
    up = RawUpstream(lambda sock, i: sock.sendall(ANSWER) or True)
    url = f"http://127.0.0.1:{up.port}"
    pw = Pathway([("eth", [url], pool(3)), ("poly", [url], pool(7))], threads=1)
    try:
        assert pw.rpc("eth")[0] == 200 and pw.rpc("poly")[0] == 200
        eps = {s["id"]: s["endpoints"][0] for s in pw.stats()["services"]}
        assert eps["eth"]["max_idle_per_host"] == 3 and eps["poly"]["max_idle_per_host"] == 7, eps
        assert eps["eth"]["connects"] == 1 and eps["poly"]["connects"] == 1, eps
        metrics = pw.metrics()
        assert f'pathway_upstream_connects_total{{service="eth",endpoint="127.0.0.1:{up.port}"}} 1' in metrics
        assert f'pathway_upstream_connects_total{{service="poly",endpoint="127.0.0.1:{up.port}"}} 1' in metrics
    finally:
        up.close()


if __name__ == "__main__":
    main()
