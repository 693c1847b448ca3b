"""pathwayctl against a scripted control plane: a Mock that answers from routes and records what it
was sent, and ctl() to run pathwayctl against it with a clean environment."""
import http.server
import json
import os
import subprocess
import tempfile
import threading
import urllib.parse

import pwtest

TOKEN = "admin-token-0123456789abcdef"


class Mock:
    """A control plane answering from `routes`: {(METHOD, path): fn(query, body) -> (status, JSON or
    None, headers)}; unknown routes get 404. `requests`: (method, path with query, headers, body)."""

    def __init__(self, routes):
        self.routes, self.requests = routes, []
        mock = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def handle_one(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                mock.requests.append((self.command, self.path, dict(self.headers), body))
                url = urllib.parse.urlsplit(self.path)
                fn = mock.routes.get((self.command, url.path))
                status, obj, hdrs = fn(urllib.parse.parse_qs(url.query), body) if fn else (404, {"error": "no such route"}, {})
                data = json.dumps(obj).encode() if obj is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (hdrs or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = handle_one

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def last(self, method):
        """The newest request of `method`: (path, headers, parsed JSON body or raw bytes)."""
        for m, p, h, b in reversed(self.requests):
            if m == method:
                try:
                    return p, h, json.loads(b)
                except ValueError:
                    return p, h, b
        raise AssertionError(f"no {method} request among {[(m, p) for m, p, _, _ in self.requests]}")

    def calls(self, method=None):
        return [(m, p) for m, p, _, _ in self.requests if method is None or m == method]


def ctl(mock, *args, timeout=30):
    e = {k: v for k, v in os.environ.items() if not k.startswith("PATHWAY_")}
    e.update({"XDG_CONFIG_HOME": tempfile.mkdtemp(prefix="pw-ctl-xdg-"), "NO_COLOR": "1", "PATHWAY_URL": mock.url,
              "PATHWAY_TOKEN": TOKEN})
    p = subprocess.run([pwtest.binary("pathwayctl"), *args], capture_output=True, text=True, env=e, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def fixed(status, obj=None, headers=None):
    return lambda q, b: (status, obj, headers or {})
