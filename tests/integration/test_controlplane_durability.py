"""kill -9 during a burst of writes: after a restart every acknowledged (201) version is there with
its document, numbers are dense, and PRAGMA integrity_check says ok."""

import sqlite3
import threading
import time

import pwtest
from cp_util import ControlPlane, expect, fleet


@pwtest.test
def test_kill9_during_write_burst():
    cp = ControlPlane()
    acked = {}  # version -> hash
    lock = threading.Lock()
    counter = [0]
    for round_ in range(3):
        stop = threading.Event()

        def writer():
            while not stop.is_set():
                with lock:
                    counter[0] += 1
                    n = counter[0]
                try:
                    s, _, b = cp.call("PUT", "/v1/config", fleet(conns=1 + n % 60000), timeout=5)
                except Exception:
                    return  # the server died under us: this write was never acknowledged
                if s == 201:
                    with lock:
                        acked[b["version"]] = b["hash"]

        threads = [threading.Thread(target=writer) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.7 + 0.2 * round_)
        cp.kill9()
        stop.set()
        for t in threads:
            t.join(10)
        assert len(acked) >= 10, f"only {len(acked)} writes acknowledged before the kill"
        print(f"round {round_}: {len(acked)} versions acknowledged before kill -9", flush=True)

        # the file is consistent before the server touches it again
        db = sqlite3.connect(cp.db)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = dict(db.execute("SELECT version, hash FROM versions"))
        db.close()
        for v, h in acked.items():
            assert rows.get(v) == h, (v, h, rows.get(v))

        cp.start()
        active = cp.call("GET", "/v1/versions?limit=1")[2]["active_version"]
        assert active >= max(acked), (active, max(acked))
        listed = []
        before = 0
        while True:
            q = f"/v1/versions?limit=1000" + (f"&before={before}" if before else "")
            page = cp.call("GET", q)[2]
            listed += [v["version"] for v in page["versions"]]
            if page["next_before"] is None:
                break
            before = page["next_before"]
        assert listed == list(range(active, 0, -1)), "version numbers are dense and newest first"
        for v, h in acked.items():
            s, _, b = expect(cp.call("GET", f"/v1/versions/{v}"), 200)
            assert b["hash"] == h and b["document"]["defaults"]["pool"]["max_conns_per_host"] >= 1
        # writes go on after the restart
        expect(cp.call("PUT", "/v1/config", fleet("warn", conns=60001 + round_)), 201)
    cp.stop()
    db = sqlite3.connect(cp.db)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    cp.cleanup()


if __name__ == "__main__":
    pwtest.main()
