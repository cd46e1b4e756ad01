"""``manage.py write_schema --out openapi.yaml``: the schema served at /api/schema/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from legacy_monolith.schema import write_schema


class Command(BaseCommand):
    help = "Write the OpenAPI schema to a file (.json for JSON, else YAML)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        size = write_schema(options["out"])
        self.stdout.write(f"wrote {options['out']} ({size} bytes)")
