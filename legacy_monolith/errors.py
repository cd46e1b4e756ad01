"""The monolith's command-line errors: one base, printed by ``strangler`` as one line.

MonolithError                 bad arguments, unreachable or unmigrated database, port in use
 └── WorkloadError            (legacy_monolith.workload) bad bounds, unreachable shop

API errors are DRF's own (plus ``common.errors.Conflict`` for 409); they never reach here.
"""

from __future__ import annotations


class MonolithError(Exception):
    """A monolith command failed; the message names the problem and the fix."""

    strangler_user_error = True
