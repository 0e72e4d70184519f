"""The routing core's steps, each written once and driven by a sync or an async shell (``routing.effects``).

``request`` (one request top down) -> ``admission`` -> cache lookup -> ``flight`` (single flight) -> ``miss`` (probe,
score, decide, call, accept/escalate, fall back, store) -> ``hits``/``hooks`` (finish, decision records);
``batch`` and ``streaming`` reuse the same steps. Step modules never import ``tierswitch.router``: they take a
``state.RoutingState``, which the ``Router`` is.
"""
