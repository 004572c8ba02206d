"""Liveness and readiness over HTTP.

/readyz: 200 once every informer's first listing is in the cache (a standby is ready too: its cache
is warm and it takes over at once). /healthz: 200 unless a worker has been stuck on one reconcile
past the deadline or an informer thread died; the kubelet restarts a pod that stays unhealthy.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class WorkerMonitor:
    """When each worker started the reconcile it is in, if any."""

    def __init__(self, stuck_after_seconds: float, clock=time.monotonic):
        self.stuck_after_seconds = stuck_after_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._busy_since: dict[str, float] = {}

    def started(self, worker: str) -> None:
        with self._lock:
            self._busy_since[worker] = self._clock()

    def finished(self, worker: str) -> None:
        with self._lock:
            self._busy_since.pop(worker, None)

    def stuck(self) -> list[str]:
        """Workers busy with one reconcile for longer than the deadline, with for how long."""
        now = self._clock()
        with self._lock:
            return [f"{worker} busy for {now - since:.0f}s" for worker, since in sorted(self._busy_since.items())
                    if now - since > self.stuck_after_seconds]


Check = Callable[[], list[str]]  # problems; empty means fine


def serve_health(address: str, port: int, healthy: Check, ready: Check) -> ThreadingHTTPServer:
    checks = {"/healthz": healthy, "/readyz": ready}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            check = checks.get(self.path.split("?")[0])
            if check is None:
                self.send_error(404)
                return
            problems = check()
            body = ("\n".join(problems) if problems else "ok").encode() + b"\n"
            self.send_response(503 if problems else 200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # probes every few seconds would flood the log
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
