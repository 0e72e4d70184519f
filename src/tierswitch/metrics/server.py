"""``serve_metrics``: a small HTTP endpoint exposing ``/metrics`` in the Prometheus text format, only when asked.

Nothing listens at import or when a registry is built: ``serve_metrics`` starts a ``ThreadingHTTPServer`` on a daemon
thread and returns a handle to stop it. It binds to 127.0.0.1 by default; exposing it wider is an explicit choice.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tierswitch.errors import ConfigError
from tierswitch.metrics.registry import Registry, default_registry

__all__ = ["CONTENT_TYPE", "MetricsServer", "serve_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger("tierswitch.metrics")


class _Handler(BaseHTTPRequestHandler):
    registry: Registry  # set on the per-server subclass

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        path = self.path.split("?", 1)[0]
        if path != "/metrics":
            self._reply(404, b"not found: scrape /metrics\n", "text/plain; charset=utf-8")
            return
        try:
            body = self.registry.render().encode("utf-8")
        except Exception:  # report, keep serving
            log.exception("rendering metrics failed")
            self._reply(500, b"rendering metrics failed; see the service log\n", "text/plain; charset=utf-8")
            return
        self._reply(200, body, CONTENT_TYPE)

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: scrapes every few seconds would flood stderr
        log.debug("metrics %s - %s", self.address_string(), format % args)


class MetricsServer:
    """A running ``/metrics`` endpoint: ``url``, ``port`` (the real one when 0 was asked), ``close()``."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host, self.port = server.server_address[:2]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_metrics(port: int = 9464, host: str = "127.0.0.1", *, registry: Registry | None = None) -> MetricsServer:
    """Serve ``registry`` (default: the process-wide ``default_registry()``) at ``http://host:port/metrics`` from a
    daemon thread; port 0 picks a free port (read it from the returned handle). ``ConfigError`` when the address
    cannot be bound."""
    registry = registry if registry is not None else default_registry()
    handler = type("MetricsHandler", (_Handler,), {"registry": registry})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:  # port taken, or a host this machine does not have
        raise ConfigError("metrics.port", f"cannot listen on {host}:{port} ({exc}); choose a free port, or 0 for "
                                          "any free one") from exc
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="tierswitch-metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
