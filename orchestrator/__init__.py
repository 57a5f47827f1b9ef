"""The orchestrator floor: engines, recipes, budgets, the async runner and the front doors.

Its public names are exported by the top-level package (``from branchwise import search``);
this package itself imports nothing, so loading ``branchwise.orchestrator.engines.types``
does not pull in the runner.
"""
