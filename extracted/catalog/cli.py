"""``strangler catalog``: migrate and serve the extracted catalog service."""

from __future__ import annotations

from extracted.servicekit.cli import service_group

catalog = service_group("catalog", 8001, "Run the extracted catalog service (Django + DRF, "
                        "its own database).")
