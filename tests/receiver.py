"""A real HTTP receiver for webhook tests: http.server on 127.0.0.1 in a thread of the test's process."""
from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any


class Receiver:
    """An HTTP server on 127.0.0.1 in a thread: records each POST (path, headers, body); the first POST to `/flaky`
    is answered 500, every POST to `/down`; with `hang` it answers nothing until closed."""

    def __init__(self, hang: bool = False) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.arrived: list[float] = []  # when each POST came (time.monotonic)
        self.when: dict[str, float] = {}  # event id -> when its POST was answered 2xx
        self.refused: list[str] = []
        self.released = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.arrived.append(time.monotonic())
                if hang:
                    receiver.released.wait(60)
                    return
                event_id = json.loads(body)["id"]
                if self.path == "/down" or (self.path == "/flaky" and not receiver.refused):
                    receiver.refused.append(event_id)
                    self.send_response(500)
                else:
                    receiver.posts.append((self.path, dict(self.headers), body))
                    receiver.when[event_id] = time.monotonic()
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(body) for where, _, body in list(self.posts) if where == path]

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
