"""``serve_metrics``: ``prometheus_client``'s own HTTP exposition of a registry, only when asked.

Nothing listens at import or when a registry is built: ``serve_metrics`` calls ``prometheus_client.start_http_server``
(a threaded WSGI server on a daemon thread) and returns a handle to stop it. It binds to 127.0.0.1 by default;
exposing it wider is an explicit choice. Like every ``prometheus_client`` server it answers a GET on any path.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import CollectorRegistry

from tierswitch.errors import ConfigError
from tierswitch.metrics.registry import default_registry

__all__ = ["CONTENT_TYPE", "MetricsServer", "serve_metrics"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class MetricsServer:
    """A running ``/metrics`` endpoint: ``url``, ``port`` (the real one when 0 was asked), ``close()``."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        address = server.server_address
        self.host: str = str(address[0])
        self.port: int = int(address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
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


def serve_metrics(port: int = 9464, host: str = "127.0.0.1", *,
                  registry: CollectorRegistry | None = None) -> MetricsServer:
    """Serve ``registry`` (default: tierswitch's process-wide ``default_registry()``) at ``http://host:port/metrics``
    from a daemon thread; port 0 picks a free port (read it from the returned handle). ``ConfigError`` when the
    address cannot be bound."""
    registry = registry if registry is not None else default_registry()
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:  # port taken, or a host this machine does not have
        raise ConfigError("metrics.port", f"cannot listen on {host}:{port} ({exc}); choose a free port, or 0 for "
                                          "any free one") from exc
    return MetricsServer(server, thread)
