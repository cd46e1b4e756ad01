"""``manage.py workload --base-url URL``: the same as ``strangler monolith workload``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from legacy_monolith.workload import WorkloadError, WorkloadSpec, format_summary, run_workload


class Command(BaseCommand):
    help = "Drive a running shop with the deterministic shopper and staff workload."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", required=True)
        parser.add_argument("--requests", type=int, default=200)
        parser.add_argument("--duration", type=float, default=60.0)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--concurrency", type=int, default=2)
        parser.add_argument("--visitor-header", default=None)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        spec = WorkloadSpec(options["base_url"].rstrip("/"), options["requests"],
                            options["duration"], options["seed"], options["concurrency"],
                            visitor_header=options["visitor_header"])
        try:
            summary = run_workload(spec).summary()
        except WorkloadError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(summary, indent=2) if options["json"]
                          else format_summary(summary))
