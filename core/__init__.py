"""The bottom layer of Branchwise: types every other package shares, importing none of them.

``errors`` (the exception tree), ``registry`` (name registries and plugin entry points),
``graph`` (Node, Score, SearchGraph), ``problem``, ``scoring`` (the scorer protocol),
``answers`` (the answer spec) and ``seeding``. Above it: ``rewards``; ``strategies`` and
``verifiers``; the ``orchestrator`` on top (see ARCHITECTURE.md, "Layers").
"""
