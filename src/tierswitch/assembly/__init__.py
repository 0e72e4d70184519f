"""Config assembly: a ``Router`` (and its tiers, policy, estimator, cache, reliability) built from plain data.

This floor sits above the routing core: it may import everything below it, and nothing below imports it.
``Router.from_config`` reaches it through ``tierswitch.routing.router.set_assembler`` (registered when this
package is imported, which ``import tierswitch`` does), so the core never imports upwards.
"""

from tierswitch.assembly.from_config import router_from_config
from tierswitch.assembly.reload import ReloadingRouter
from tierswitch.router import set_assembler

set_assembler(router_from_config)

__all__ = ["ReloadingRouter", "router_from_config"]
