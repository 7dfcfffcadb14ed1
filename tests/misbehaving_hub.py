"""A tiny Hugging Face Hub that misbehaves, for the fault tests: one mode per server.

- ``hang``: accepts the connection and the request, then never answers (until closed);
- ``500``: every request gets HTTP 500 (counted in ``hits``);
- ``html``: every request gets HTTP 200 with an HTML login page;
- ``404``: every request gets HTTP 404 with the Hub's ``X-Error-Code: RepoNotFound``.

Binds 127.0.0.1 on a free port, serves from daemon threads; ``close()`` releases hung
handlers at once.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("hang", "500", "html", "404")
HTML = b"<!doctype html><html><head><title>Sign in</title></head><body>Log in</body></html>"


class MisbehavingHub:
    """``with MisbehavingHub(mode) as hub: hub.url, hub.hits``."""

    def __init__(self, mode: str):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode, self.hits, self.released = mode, 0, threading.Event()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _answer(self):
                hub.hits += 1
                if hub.mode == "hang":
                    hub.released.wait(60)
                    return
                status, body, ctype = {"500": (500, b'{"error": "Internal Error"}', "application/json"),
                                       "html": (200, HTML, "text/html"),
                                       "404": (404, b'{"error": "Repository not found"}',
                                               "application/json")}[hub.mode]
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                if hub.mode == "404":
                    self.send_header("X-Error-Code", "RepoNotFound")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_PUT = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MisbehavingHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release hung handlers and stop serving."""
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
