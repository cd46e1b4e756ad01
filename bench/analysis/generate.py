"""Synthetic Django projects and query logs with a known answer, for tests and benchmarks.

``generate_project`` writes a "real-world-shaped" codebase: bounded contexts whose models
are spread over apps that do not match them (tangled on purpose), sparse foreign keys
inside a context (a tree), many foreign keys across contexts and to a user hub, code
(views, services, serializers) that mostly works inside one context, and filler code up
to a target size. ``generate_log`` writes a capture-format query log whose requests
read and write mostly inside one context, with realistic repetition.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

WORDS = ("order", "item", "price", "stock", "ship", "note", "rate", "plan", "slot", "fee",
         "batch", "claim", "quote", "route", "ledger", "promo", "badge", "visit", "asset",
         "offer", "bill", "task", "lead", "case", "unit", "lot", "bin", "pick", "pack", "dock")


@dataclass
class Project:
    """What was generated: model key -> context, plus sizes."""

    root: Path
    truth: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)  # model key -> table
    endpoints: dict[str, list[str]] = field(default_factory=dict)  # context -> route patterns
    files: int = 0
    lines: int = 0


def _name(rng: random.Random, used: set[str]) -> str:
    while True:
        n = rng.choice(WORDS).title() + rng.choice(WORDS).title() + str(rng.randint(1, 999))
        if n not in used:
            used.add(n)
            return n


def generate_project(root: Path, contexts: int = 8, models_per_context: tuple[int, int] = (3, 7),
                     apps: int | None = None, cross_fk: float = 0.45, tangle: float = 0.3,
                     modules_per_context: int = 3, target_lines: int = 0,
                     seed: int = 1) -> Project:
    """Write a Django project under ``root`` and return its ground truth."""
    rng = random.Random(seed)
    used: set[str] = set()
    apps = apps or max(2, contexts // 2)
    app_names = [f"app{i}" for i in range(apps)]
    project = Project(root)
    models: dict[str, list[tuple[str, str]]] = {}  # context -> [(app, Model)]
    for c in range(contexts):
        ctx = f"ctx{c}"
        home = app_names[c % apps]
        n = rng.randint(*models_per_context)
        models[ctx] = [(rng.choice(app_names) if rng.random() < tangle else home,
                        _name(rng, used)) for _ in range(n)]
    fields: dict[tuple[str, str], list[str]] = {}
    all_models = [(ctx, app, m) for ctx, ms in models.items() for app, m in ms]
    for ctx, ms in models.items():
        for i, (app, m) in enumerate(ms):
            fks = []
            if i:
                parent = ms[rng.randrange(i)]
                fks.append(f'"{parent[0]}.{parent[1]}"')
            if rng.random() < 0.5:
                fks.append("settings.AUTH_USER_MODEL")
            while rng.random() < cross_fk:
                other = rng.choice(all_models)
                if other[0] != ctx:
                    fks.append(f'"{other[1]}.{other[2]}"')
            fields[(app, m)] = fks
            project.truth[f"{app}.{m}"] = ctx
            project.tables[f"{app}.{m}"] = f"{app}_{m.lower()}"
    _write_apps(root, app_names, fields, project)
    _write_code(root, models, all_models, modules_per_context, rng, project)
    if target_lines:
        _write_filler(root, app_names, target_lines - project.lines, rng, project)
    return project


def _write(project: Project, path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        project.lines -= path.read_text().count("\n")
    else:
        project.files += 1
    path.write_text(text)
    project.lines += text.count("\n")


def _write_apps(root: Path, app_names: list[str], fields: dict[tuple[str, str], list[str]],
                project: Project) -> None:
    _write(project, root / "manage.py", "import django\n")
    _write(project, root / "config" / "__init__.py", "")
    _write(project, root / "config" / "settings.py",
           'AUTH_USER_MODEL = "people.User"\nROOT_URLCONF = "site.urls"\n')
    _write(project, root / "people" / "__init__.py", "")
    _write(project, root / "people" / "models.py",
           "from django.contrib.auth.models import AbstractUser\n\n\n"
           "class User(AbstractUser):\n    pass\n")
    project.truth["people.User"] = "shared"
    for app in app_names:
        _write(project, root / app / "__init__.py", "")
        body = ["from django.conf import settings", "from django.db import models", ""]
        for (a, m), fks in fields.items():
            if a != app:
                continue
            body += ["", f"class {m}(models.Model):", "    name = models.CharField(max_length=50)"]
            body += [f"    ref{i} = models.ForeignKey({t}, on_delete=models.CASCADE, "
                     f"related_name='+')" for i, t in enumerate(fks)]
            body.append("")
        _write(project, root / app / "models.py", "\n".join(body) + "\n")


def _write_code(root: Path, models: dict[str, list[tuple[str, str]]],
                all_models: list[tuple[str, str, str]], per_context: int, rng: random.Random,
                project: Project) -> None:
    urls = ["from django.urls import path", ""]
    patterns = []
    for ctx, ms in models.items():
        pkg = root / "features" / ctx
        _write(project, root / "features" / "__init__.py", "")
        _write(project, pkg / "__init__.py", "")
        for k in range(per_context):
            lines = []
            used = set()
            funcs = []
            for f in range(rng.randint(2, 4)):
                chosen = rng.sample(ms, min(len(ms), rng.randint(2, 3)))
                if rng.random() < 0.2:  # some code reaches into another context
                    other = rng.choice(all_models)
                    chosen.append((other[1], other[2]))
                used.update(chosen)
                name = f"handle_{k}_{f}"
                funcs.append(name)
                lines += ["", "", f"def {name}(request, pk=None):"]
                lines += [f"    {m.lower()} = {m}.objects.filter(pk=pk).first()"
                          for _, m in chosen]
                lines.append("    return " + ", ".join(m.lower() for _, m in chosen))
            imports = [f"from {app}.models import {m}" for app, m in sorted(used)]
            _write(project, pkg / f"views{k}.py", "\n".join(imports + lines) + "\n")
            for name in funcs:
                route = f"api/{ctx}/v{k}/{name}/<int:pk>/"
                urls.append(f"from features.{ctx}.views{k} import {name} as {ctx}_{k}_{name}")
                patterns.append(f'    path("{route}", {ctx}_{k}_{name}),')
                project.endpoints.setdefault(ctx, []).append(route)
    _write(project, root / "config" / "urls.py",
           "\n".join(urls) + "\n\nurlpatterns = [\n" + "\n".join(patterns) + "\n]\n")


def _write_filler(root: Path, app_names: list[str], lines: int, rng: random.Random,
                  project: Project) -> None:
    """Plain helper modules (no models) up to the target size: real projects are mostly this."""
    per_module = 330
    i = 0
    while lines > 0:
        body = ['"""Helpers."""', "import math", "from collections import defaultdict", ""]
        for f in range(per_module // 11):
            body += ["", f"def helper_{f}(values, factor={f}):", "    total = 0",
                     "    seen = defaultdict(int)", "    for v in values:",
                     "        if v % 3 == 0:", "            total += math.sqrt(v) * factor",
                     "        else:", "            seen[v] += 1",
                     "    return total, dict(seen)"]
        text = "\n".join(body) + "\n"
        _write(project, root / rng.choice(app_names) / "helpers" / f"mod{i}.py", text)
        _write(project, root / rng.choice(app_names) / "helpers" / "__init__.py", "")
        lines -= text.count("\n")
        i += 1


def generate_log(path: Path, project: Project, statements: int, seed: int = 2,
                 cross: float = 0.1) -> int:
    """Write a capture-format query log of about ``statements`` lines; returns the count."""
    rng = random.Random(seed)
    by_ctx: dict[str, list[str]] = {}
    for key, ctx in project.truth.items():
        by_ctx.setdefault(ctx, []).append(project.tables[key] if key in project.tables
                                          else "people_user")
    ctxs = sorted(c for c in by_ctx if c != "shared")
    written = 0
    request = 0
    with path.open("w") as fh:
        while written < statements:
            ctx = rng.choice(ctxs)
            route = rng.choice(project.endpoints.get(ctx, [f"api/{ctx}/"]))
            request += 1
            tables = rng.sample(by_ctx[ctx], min(len(by_ctx[ctx]), rng.randint(1, 3)))
            if rng.random() < cross:
                tables.append(rng.choice(by_ctx[rng.choice(ctxs)]))
            for t in tables:
                sql = (f'SELECT "{t}"."id", "{t}"."name" FROM "{t}" WHERE "{t}"."id" = '
                       f"{rng.randint(1, 10**6)}")
                fh.write(json.dumps({"request_id": f"r{request}", "route_pattern": route,
                                     "method": "GET", "sql": sql, "in_transaction": False})
                         + "\n")
                written += 1
            if rng.random() < 0.3:
                t = tables[0]
                fh.write(json.dumps({"request_id": f"r{request}", "route_pattern": route,
                                     "method": "POST", "in_transaction": True,
                                     "sql": f'UPDATE "{t}" SET "name" = %s WHERE "id" = %s'})
                         + "\n")
                written += 1
    return written
