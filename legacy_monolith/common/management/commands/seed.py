"""``manage.py seed --size small --seed 42``: the same as ``strangler monolith seed``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from legacy_monolith.seed import SIZES, seed


class Command(BaseCommand):
    help = "Empty the shop and fill it with deterministic demo data."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--size", choices=sorted(SIZES), default="small")
        parser.add_argument("--seed", type=int, default=42)

    def handle(self, *args: Any, **options: Any) -> None:
        report = seed(SIZES[options["size"]], options["seed"])
        self.stdout.write(f"seeded {report.size} in {report.total_seconds:.1f} s: {report.counts}")
