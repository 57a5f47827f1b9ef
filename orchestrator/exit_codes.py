"""The exit codes of the ``branchwise`` command."""

EXIT_OK = 0
"""Every problem finished (right or wrong)."""
EXIT_PROBLEMS_FAILED = 1
"""Some problems failed with an error (they run again on resume)."""
EXIT_BAD_INPUT = 2
"""Bad input: recipe, dataset, results folder or arguments."""
EXIT_ALL_FAILED = 3
"""Every problem failed."""
EXIT_STORE_FAULT = 4
"""Storing a result failed (disk full, I/O or database error); finished problems are kept
and a rerun resumes after them."""
EXIT_BROKEN_PIPE = 141
"""The output was closed early (``| head``): the shell's code for a death by SIGPIPE."""
EXIT_INTERRUPTED = 130
"""Interrupted; finished problems are saved."""
