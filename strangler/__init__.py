"""strangler: the toolkit's front door, which belongs to none of its four jobs.

Its face is the ``strangler`` command (``cli.main``, the console script; each job's
subcommands are imported lazily by name from the job's own package), ``strangler demo``, and
``shadow_rollback.ShadowRollbackMiddleware``, which the monolith and every extracted service
install by dotted path. The toolkit's own packages never import it (an import-linter
contract); the Django apps do, for ``shadow_changes``: the request id their outbox writers
stamp on events (``current_request_id``) and the marker their calls to other contexts forward
(``shadow_headers``, ``httpx_event_hooks``).
"""
