"""strangler: the toolkit's front door, which belongs to none of its four jobs.

Its face is the ``strangler`` command (``cli.main``, the console script; each job's
subcommands are imported lazily by name from the job's own package), ``strangler demo``, and
``shadow_rollback.ShadowRollbackMiddleware``, which the monolith and every extracted service
install by dotted path. Nothing imports this package (an import-linter contract).
"""
