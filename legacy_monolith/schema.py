"""Write the OpenAPI schema (the same document ``GET /api/schema/`` serves) to a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer


def render_schema(as_json: bool) -> bytes:
    """The OpenAPI 3 document as YAML (default) or JSON bytes."""
    generator = SchemaGenerator()
    document = generator.get_schema(request=None, public=True)
    renderer = OpenApiJsonRenderer() if as_json else OpenApiYamlRenderer()
    return bytes(renderer.render(document, renderer_context={}))


def write_schema(out: Path) -> int:
    """Write the schema atomically; JSON when ``out`` ends in .json. Returns bytes written."""
    data = render_schema(as_json=out.suffix == ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(data)
