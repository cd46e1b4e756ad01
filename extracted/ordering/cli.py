"""``strangler ordering``: migrate and serve the extracted ordering service."""

from __future__ import annotations

from extracted.servicekit.cli import service_group

ordering = service_group("ordering", 8002, "Run the extracted ordering service (Django + DRF, "
                         "its own database).")
