"""Errors of the sync machinery.

SyncError                      base; printed by ``strangler`` as one line, exit 2
├── BadEvent                   an outbox row or event JSON breaks contract 5
├── DatabaseUnavailable        a database URL cannot be opened or queried
├── DeliveryFailed             the service refused or could not be reached (retryable)
│   └── SequenceGap            an aggregate's events skip a sequence (a dead letter at the
│                              service; 409 from consumers that keep none)
├── CutoverFailed              a cutover step failed; the steps before it were rolled back
└── Divergence                 reconcile found rows that differ (exit 1, not 2)
"""

from __future__ import annotations


class SyncError(Exception):
    """Base of the sync errors: one line, says what failed and how to fix it."""

    strangler_user_error = True


class BadEvent(SyncError):
    """An outbox row or an event body does not follow contract 5."""


class DatabaseUnavailable(SyncError):
    """A database given by URL cannot be opened or queried."""


class DeliveryFailed(SyncError):
    """Delivering to the service failed; the relay backs off and retries."""


class SequenceGap(DeliveryFailed):
    """The service refused an event because an earlier one of its aggregate is missing."""


class Divergence(SyncError):
    """Reconcile found differences between the two sides."""


class CutoverFailed(SyncError):
    """A cutover step failed; the steps before it were rolled back."""
