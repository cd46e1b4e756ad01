"""Grab-bag helpers imported from every app: the legacy `utils` module (a tangle on purpose).

It knows about money, order numbers, auditing and the current user. Nobody owns it, so
everybody depends on it; docs/tangles.md lists who imports what.
"""

from __future__ import annotations

import hashlib
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models

CENT = Decimal("0.01")
DEFAULT_CURRENCY = "EUR"


def money(value: Decimal | int | str) -> Decimal:
    """Round to cents, half up.

    >>> money("1.005")
    Decimal('1.01')
    """
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def apply_percent_off(amount: Decimal, percent: int) -> Decimal:
    """``amount`` minus ``percent`` per cent, in cents.

    >>> apply_percent_off(Decimal("10.00"), 15)
    Decimal('8.50')
    """
    return money(amount * (Decimal(100) - Decimal(percent)) / Decimal(100))


def order_number(order_id: int) -> str:
    """The customer-facing number of an order, stable for an id.

    >>> order_number(42)
    'ORD-00000042'
    """
    return f"ORD-{order_id:08d}"


def tracking_number(order_number_: str, carrier_code: str) -> str:
    """A deterministic tracking number for a shipment of an order.

    >>> tracking_number("ORD-00000001", "dhl")[:4]
    'DHL-'
    """
    digest = hashlib.sha1(f"{order_number_}:{carrier_code}".encode()).hexdigest()[:12]
    return f"{carrier_code.upper()}-{digest.upper()}"


def audit(user: Any, action: str, target: models.Model | None = None) -> None:
    """Write one row to the shared audit log (every app calls this)."""
    from legacy_monolith.common.models import AuditLogEntry

    AuditLogEntry.objects.create(
        user=user if getattr(user, "is_authenticated", False) else None,
        action=action,
        content_type=ContentType.objects.get_for_model(target) if target is not None else None,
        object_id=target.pk if target is not None else None,
    )


def is_staff(user: Any) -> bool:
    """True for an authenticated staff user."""
    return bool(getattr(user, "is_authenticated", False) and user.is_staff)
