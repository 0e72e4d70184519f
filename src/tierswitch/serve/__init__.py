"""``tierswitch serve``: an OpenAI-compatible routing gateway over a ``Router`` (Starlette under uvicorn).

Layer 4 (an entry point): it builds on ``assembly`` (tiers and routers from config, hot reload) and the router's
public API only. See ``serve.app`` for the shared request path and ``serve.endpoints`` for the endpoints.
"""

from tierswitch.serve.app import GatewayApp, create_app
from tierswitch.serve.settings import AUTO, GatewaySettings, hash_key, parse_gateway

__all__ = ["AUTO", "GatewayApp", "GatewaySettings", "create_app", "hash_key", "parse_gateway"]
