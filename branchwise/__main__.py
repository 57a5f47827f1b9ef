"""``python -m branchwise``: the same command line as the ``branchwise`` script."""

from branchwise.orchestrator.cli import main

raise SystemExit(main())
