"""The router's parts beside its core (``tierswitch.router``): batch routing, single flight, decision records and
learning policies' wiring, counters, building from a config, and config reload."""
