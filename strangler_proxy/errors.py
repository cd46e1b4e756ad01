"""The one exception base of ``strangler_proxy`` and the errors built on it.

::

    ProxyError                  strangler_user_error: the CLI prints one line, exits 2
    ├── ConfigError             a routes file is invalid (names the key, the line, the fix)
    ├── RouteEditError          `routes set` cannot apply the change (unknown route, gate refused)
    ├── StartupError            the proxy cannot start (no admin token, port in use)
    ├── StoreError              the shadow diff store cannot be opened or written (store.py)
    ├── ReportError             a shadow report cannot be built or written (shadow_report.py)
    ├── ReplayError             a replay run cannot start or read its input (replay.py)
    └── ExportError             an engine cannot express a route or refuses its config
                                (export/plan.py)

The last four are defined next to the code that raises them (shadow, export) and
subclass :class:`ProxyError`, so the CLI treats them like the rest.
"""

from __future__ import annotations


class ProxyError(Exception):
    """Base of every error the proxy package raises on purpose."""

    strangler_user_error = True


class ConfigError(ProxyError):
    """The routes file is invalid; ``str()`` is one line naming key, value, line and fix."""


class RouteEditError(ProxyError):
    """A route flip was refused or cannot be applied."""


class StartupError(ProxyError):
    """The proxy cannot start as configured."""


class PoolTimeout(TimeoutError):  # noqa: N818 - reads as what happened, like TimeoutError
    """No connection to an upstream became free within its ``pool_timeout`` (edge/upstream.py).

    Not a :class:`ProxyError`: it never reaches a user, the exchange answers 504. Defined here
    because the edge modules are compiled, and a compiled class cannot subclass a builtin.
    """


__all__ = ["ConfigError", "PoolTimeout", "ProxyError", "RouteEditError", "StartupError"]
