"""Read one Python file's syntax tree into :class:`FileFacts` (no import, no execution).

>>> f = python_facts("from django.db import models\\nclass A(models.Model):\\n"
...                  "    b = models.ForeignKey('app.B', on_delete=models.CASCADE)\\n", "x.models")
>>> f.classes[0].fields[0].target, f.classes[0].fields[0].kind
('app.B', 'ForeignKey')
"""

from __future__ import annotations

import ast
import re
from collections import deque
from collections.abc import Iterator

from analysis.facts import (
    AtomicFact,
    ClassFact,
    FieldFact,
    FileFacts,
    RouterFact,
    SqlFact,
    UnitFact,
    UrlFact,
)
from analysis.parse_newer import parse_newer

RELATION_KINDS = frozenset(
    {"ForeignKey", "OneToOneField", "ManyToManyField", "GenericForeignKey", "GenericRelation",
     "ParentalKey", "ParentalManyToManyField", "TreeForeignKey"}
)
SQL_METHODS = frozenset({"execute", "executemany", "raw"})
SQL_CALLABLES = frozenset({"RawSQL", "RunSQL"})
URL_FUNCS = frozenset({"path", "re_path", "url"})
_FORMAT_FIELD = re.compile(r"\{[^{}]*\}")
# Text that may make a file matter beyond its imports: classes (models, serializers, views,
# app configs), model access, raw SQL, URL patterns and the settings the passes read.
# Plain substring tests (a fast scan each), not one regular expression with alternatives
# (which steps through every byte of every file); a false hit only costs a full parse.
_MATTERS = (b"class", b".objects", b"_meta", b"execute", b".raw(", b"RawSQL", b"RunSQL",
            b".extra(", b"get_model", b"get_user_model", b"urlpatterns", b".register(",
            b"AUTH_USER_MODEL", b"ROOT_URLCONF", b"include(", b"path(", b"url(",
            b"ATOMIC_REQUESTS", b"atomic", b"receiver(", b".connect(")
_IMPORT = re.compile(rb"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+import\b|import[ \t]+[\w.])[^\n]*",
                     re.M)


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    if isinstance(node, ast.Call):  # models.Model subclass via a call, e.g. six.with_metaclass
        return None
    return None


def _const_str(node: ast.AST | None, scope: dict[str, str]) -> str | None:
    """A string built from constants, names bound to constants, ``+`` and f-strings."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return scope.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _const_str(node.left, scope), _const_str(node.right, scope)
        return left + right if left is not None and right is not None else None
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"):
        template = _const_str(node.func.value, scope)
        return _FORMAT_FIELD.sub("__dyn__", template) if template is not None else None
    if isinstance(node, ast.JoinedStr):
        # f-string parts we cannot know become a placeholder identifier, so the statement
        # still parses; a table name built at run time is lost (and says so: __dyn__).
        return "".join(
            v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "__dyn__"
            for v in node.values
        )
    return None


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, name] if name else base)


class _Collector:
    """Walks a module once and fills the pieces of :class:`FileFacts`."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.is_package = is_package
        self.bindings: dict[str, str] = {}
        self.imported: list[tuple[str, int]] = []
        self.consts: dict[str, str] = {}
        self.stars: list[str] = []
        self.uses_django = False

    def imports(self, nodes: list[ast.Import | ast.ImportFrom]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.imported.append((alias.name, node.lineno))
                    if alias.asname:
                        self.bindings[alias.asname] = alias.name
                    else:
                        root = alias.name.split(".")[0]
                        self.bindings.setdefault(root, root)
                    self.uses_django |= alias.name.startswith("django")
            elif isinstance(node, ast.ImportFrom):
                self._import_from(node)

    def _import_from(self, node: ast.ImportFrom) -> None:
        base = _resolve_relative(self.module, self.is_package, node.level, node.module)
        self.uses_django |= base.startswith(("django", "rest_framework"))
        for alias in node.names:
            if alias.name == "*":
                self.imported.append((base, node.lineno))
                if base not in self.stars:
                    self.stars.append(base)
                continue
            target = f"{base}.{alias.name}" if base else alias.name
            self.bindings[alias.asname or alias.name] = target
            self.imported.append((target, node.lineno))

    def module_consts(self, tree: ast.Module) -> None:
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                value = _const_str(node.value, self.consts)
                if isinstance(target, ast.Name) and value is not None:
                    self.consts[target.id] = value


def _kwarg(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _relation_target(call: ast.Call, kind: str) -> str:
    node = call.args[0] if call.args else _kwarg(call, "to")
    if kind == "GenericForeignKey":
        return "contenttypes.ContentType"
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    ref = dotted(node) if node is not None else None
    return f"@{ref}" if ref else "?"


def _field(name: str, call: ast.Call, line: int) -> FieldFact | None:
    func = dotted(call.func) or ""
    kind = func.rsplit(".", 1)[-1]
    if kind not in RELATION_KINDS:
        return None
    through = _kwarg(call, "through")
    through_ref: str | None = None
    if isinstance(through, ast.Constant) and isinstance(through.value, str):
        through_ref = through.value
    elif through is not None and (d := dotted(through)):
        through_ref = f"@{d}"
    db_table = _kwarg(call, "db_table")
    parent_link = _kwarg(call, "parent_link")
    return FieldFact(
        name=name, kind=kind, target=_relation_target(call, kind), line=line,
        through=through_ref,
        db_table=db_table.value if isinstance(db_table, ast.Constant) and isinstance(
            db_table.value, str) else None,
        parent_link=isinstance(parent_link, ast.Constant) and parent_link.value is True,
        reference=_is_reference(call, kind),
    )


def _is_reference(call: ast.Call, kind: str) -> bool:
    """A key that may be empty or outlive its target (``PROTECT``, ``SET_NULL``...).

    A non-null ``CASCADE`` key makes the row a part of its target (one aggregate, in
    domain-driven terms); anything else points at another aggregate.
    """
    if kind not in ("ForeignKey", "OneToOneField"):
        return False
    null = _kwarg(call, "null")
    if isinstance(null, ast.Constant) and null.value is True:
        return True
    on_delete = _kwarg(call, "on_delete")
    if on_delete is None and len(call.args) > 1:
        on_delete = call.args[1]
    name = (dotted(on_delete) or "") if on_delete is not None else "CASCADE"
    return bool(name) and not name.endswith("CASCADE")


def _class_fact(node: ast.ClassDef) -> ClassFact:
    meta: list[tuple[str, str]] = []
    attrs: list[tuple[str, str]] = []
    fields: list[FieldFact] = []
    managers: list[tuple[str, str]] = []
    has_fields = False
    for stmt in node.body:
        if isinstance(stmt, ast.ClassDef) and stmt.name == "Meta":
            meta.extend(_constant_assigns(stmt.body))
        elif isinstance(stmt, ast.Assign | ast.AnnAssign):
            target = stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target
            if not isinstance(target, ast.Name) or stmt.value is None:
                continue
            value = stmt.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str | bool):
                attrs.append((target.id, str(value.value)))
            if isinstance(value, ast.Call):
                func = dotted(value.func) or ""
                fact = _field(target.id, value, stmt.lineno)
                if fact is not None:
                    fields.append(fact)
                elif func.endswith(("Field", "Key")):
                    has_fields = True
                elif func.endswith(("Manager", ".as_manager", "from_queryset")):
                    managers.append((target.id, func))
                elif isinstance(value.func, ast.Call) and func == "" :
                    inner = dotted(value.func.func) or ""
                    if inner.endswith("from_queryset"):
                        managers.append((target.id, inner))
    bases = tuple(d for b in node.bases if (d := dotted(b)))
    return ClassFact(
        name=node.name, line=node.lineno, bases=bases, meta=tuple(meta), attrs=tuple(attrs),
        fields=tuple(fields), managers=tuple(managers),
        has_model_fields=has_fields or bool(fields),
    )


def _constant_assigns(body: list[ast.stmt]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for stmt in body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            value = stmt.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str | bool):
                out.append((stmt.targets[0].id, str(value.value)))
    return out


def _sql_from_call(call: ast.Call, scope: dict[str, str]) -> list[SqlFact]:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name in SQL_METHODS or name in SQL_CALLABLES:
        first = call.args[0] if call.args else _kwarg(call, "sql") or _kwarg(call, "raw_query")
        items = first.elts if isinstance(first, ast.List | ast.Tuple) else [first]
        out = []
        for item in items:
            if isinstance(item, ast.Tuple) and item.elts:  # RunSQL([(sql, params)])
                item = item.elts[0]
            text = _const_str(item, scope)
            if text is not None and text.strip():
                out.append(SqlFact(sql=text, line=call.lineno, via=name))
        return out
    if name == "extra":
        return _extra_sql(call, scope)
    return []


def _extra_sql(call: ast.Call, scope: dict[str, str]) -> list[SqlFact]:
    tables: list[str] = []
    fragments: list[str] = []
    for kw in call.keywords:
        values: list[ast.expr] = []
        if isinstance(kw.value, ast.List | ast.Tuple):
            values = list(kw.value.elts)
        elif isinstance(kw.value, ast.Dict):
            values = [v for v in kw.value.values if v is not None]
        strings = [s for v in values if (s := _const_str(v, scope)) is not None]
        if kw.arg == "tables":
            tables.extend(strings)
        elif kw.arg == "where":
            fragments.extend(f"SELECT 1 WHERE {s}" for s in strings)
        elif kw.arg == "select":
            fragments.extend(f"SELECT {s}" for s in strings)
    out = [SqlFact(sql=s, line=call.lineno, via="extra") for s in fragments]
    if tables:
        out.append(SqlFact(sql="", line=call.lineno, via="extra", tables=tuple(tables)))
    return out


def walk(node: ast.AST) -> Iterator[ast.AST]:
    """:func:`ast.walk`, same nodes in the same (breadth-first) order, about twice as fast:
    no generator per node for its children and no try/except per field."""
    todo = deque([node])
    pop, push = todo.popleft, todo.append
    node_type, list_type = ast.AST, list
    while todo:
        current = pop()
        for name in current._fields:
            value = getattr(current, name, None)
            if isinstance(value, node_type):
                push(value)
            elif isinstance(value, list_type):
                for item in value:
                    if isinstance(item, node_type):
                        push(item)
        yield current


def _unit(node: ast.AST, name: str, kind: str, consts: dict[str, str],
          imports: list[ast.Import | ast.ImportFrom],
          connects: list[tuple[str, str, str]] | None = None) -> UnitFact:
    """One walk over a unit: names it references, SQL it runs, imports it makes, the
    transactions it opens and the signals it receives."""
    refs: set[str] = set()
    calls: list[ast.Call] = []
    binds: list[ast.AST] = []  # assignments and for-loops, in walk order, for _orm_writes
    regions: list[tuple[ast.AST, str]] = []  # transaction.atomic functions and blocks
    scope = dict(consts)
    for child in walk(node):
        t = type(child)
        if t is ast.Name:
            refs.add(child.id)  # type: ignore[attr-defined]
        elif t is ast.Attribute:
            d = dotted(child)
            if d:
                parts = d.split(".")
                refs.update(".".join(parts[:i]) for i in range(2, min(len(parts), 4) + 1))
        elif t is ast.Call:
            calls.append(child)  # type: ignore[arg-type]
            func = child.func  # type: ignore[attr-defined]
            if connects is not None and isinstance(func, ast.Attribute) \
                    and func.attr == "connect":
                connects.extend(_connect(child))  # type: ignore[arg-type]
        elif t is ast.FunctionDef or t is ast.AsyncFunctionDef:
            if any(_is_atomic(d) for d in child.decorator_list):  # type: ignore[attr-defined]
                regions.append((child, "decorator"))
        elif t is ast.With or t is ast.AsyncWith:
            if any(_is_atomic(i.context_expr) for i in child.items):  # type: ignore[attr-defined]
                regions.append((child, "with"))
        elif t is ast.Assign:
            binds.append(child)
            target = child.targets[0]  # type: ignore[attr-defined]
            if isinstance(target, ast.Name):
                value = _const_str(child.value, scope)  # type: ignore[attr-defined]
                if value is not None:
                    scope[target.id] = value
        elif t is ast.For:
            binds.append(child)
        elif t is ast.Import or t is ast.ImportFrom:
            imports.append(child)  # type: ignore[arg-type]
    sql = [fact for call in calls for fact in _sql_from_call(call, scope)]
    model_strings = [m for call in calls for m in _model_strings(call)]
    line = getattr(node, "lineno", 1)
    receives = _receives(node) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) \
        else ()
    return UnitFact(name=name, line=line, kind=kind, refs=tuple(sorted(refs)),
                    model_strings=tuple(model_strings), sql=tuple(sql),
                    writes=_orm_writes(binds, calls),
                    atomic=_atomic_facts(regions, binds, scope), receives=receives)


def _is_atomic(node: ast.AST) -> bool:
    """``transaction.atomic``, ``atomic``, ``transaction.atomic(using=...)``."""
    target = node.func if isinstance(node, ast.Call) else node
    return (dotted(target) or "").rsplit(".", 1)[-1] == "atomic"


def _atomic_facts(regions: list[tuple[ast.AST, str]], binds: list[ast.AST],
                  scope: dict[str, str]) -> tuple[AtomicFact, ...]:
    """The outermost transactions of a unit, with what runs inside each.

    >>> f = python_facts("from django.db import transaction\\n"
    ...                  "def pay(o):\\n    with transaction.atomic():\\n        o.save()\\n"
    ...                  "        Stock.objects.filter(p=1).update(n=0)\\n        notify(o)\\n",
    ...                  "shop.actions")
    >>> [(t.line, t.how, t.writes, "notify" in t.refs) for t in f.units[0].atomic]
    [(3, 'with', ('Stock', 'o'), True)]
    """
    spans = [(getattr(n, "lineno", 0), getattr(n, "end_lineno", 0) or 0) for n, _ in regions]
    out: list[AtomicFact] = []
    for (node, how), (start, end) in zip(regions, spans, strict=True):
        if any(s <= start and end <= e and (s, e) != (start, end) for s, e in spans):
            continue  # a savepoint inside another transaction
        body = node.body if isinstance(node, ast.With | ast.AsyncWith) else node  # type: ignore[attr-defined]
        refs: set[str] = set()
        calls: list[ast.Call] = []
        for part in body if isinstance(body, list) else [body]:
            for child in walk(part):
                if isinstance(child, ast.Name):
                    refs.add(child.id)
                elif isinstance(child, ast.Attribute) and (d := dotted(child)):
                    parts = d.split(".")
                    refs.update(".".join(parts[:i]) for i in range(2, min(len(parts), 4) + 1))
                elif isinstance(child, ast.Call):
                    calls.append(child)
        out.append(AtomicFact(
            line=start, how=how, writes=_orm_writes(binds, calls), refs=tuple(sorted(refs)),
            sql=tuple(f for call in calls for f in _sql_from_call(call, scope))))
    return tuple(out)


_MODEL_SIGNALS = ("pre_save", "post_save", "pre_delete", "post_delete", "m2m_changed")


def _signal_pairs(signal: ast.AST | None, sender: ast.AST | None) -> list[tuple[str, str]]:
    signals = signal.elts if isinstance(signal, ast.List | ast.Tuple) else [signal]
    if isinstance(sender, ast.Constant) and isinstance(sender.value, str):
        who = sender.value
    elif isinstance(sender, ast.Call) and (dotted(sender.func) or "").endswith(
            "get_user_model"):
        who = "@settings.AUTH_USER_MODEL"
    elif sender is None:
        who = ""  # any sender
    else:
        who = f"@{d}" if (d := dotted(sender)) else "?"  # a sender we cannot name
    return [(name, who) for s in signals if s is not None and (name := dotted(s))]


def _receives(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[tuple[str, str], ...]:
    """``@receiver(post_save, sender=Order)`` -> ``(("post_save", "@Order"),)``."""
    out: list[tuple[str, str]] = []
    for d in node.decorator_list:
        if isinstance(d, ast.Call) and (dotted(d.func) or "").rsplit(".", 1)[-1] == "receiver":
            out += _signal_pairs(d.args[0] if d.args else _kwarg(d, "signal"),
                                 _kwarg(d, "sender"))
    return tuple(out)


def _connect(call: ast.Call) -> list[tuple[str, str, str]]:
    """``post_save.connect(handler, sender=Order)`` -> ``[("post_save", "handler", "@Order")]``."""
    signal = call.func.value if isinstance(call.func, ast.Attribute) else None
    handler = call.args[0] if call.args else _kwarg(call, "receiver")
    name = dotted(handler) if handler is not None else None
    if signal is None or not name:
        return []
    return [(s, name, who) for s, who in _signal_pairs(signal, _kwarg(call, "sender"))]


WRITE_METHODS = frozenset({
    "create", "bulk_create", "get_or_create", "update_or_create", "update", "bulk_update",
    "delete", "save", "select_for_update",
})


def _orm_writes(binds: list[ast.AST], calls: list[ast.Call]) -> tuple[str, ...]:
    """Names whose rows a unit writes: ``Product.objects.create(..)``, ``obj.save()``.

    The receiver chain is followed to its root name; a local variable is followed one
    step to the name its value came from (``obj = Product.objects.get(..)``). ``binds``
    are the unit's assignments and for-loops in walk order (collected by :func:`_unit`'s
    one walk, so the unit is not walked twice).
    """
    origin: dict[str, str] = {}
    for child in binds:
        if isinstance(child, ast.Assign) and isinstance(child.targets[0], ast.Name):
            root = _root_name(child.value)
            if root is not None:
                origin[child.targets[0].id] = root
        elif isinstance(child, ast.For) and isinstance(child.target, ast.Name):
            root = _root_name(child.iter)
            if root is not None:
                origin[child.target.id] = root
    out: set[str] = set()
    for call in calls:
        f = call.func
        if isinstance(f, ast.Attribute) and f.attr in WRITE_METHODS:
            root = _root_name(f.value)
            if root is not None:
                out.add(origin.get(root, root) if root not in ("self", "cls") else root)
    return tuple(sorted(out - {"self", "cls"}))


def _root_name(node: ast.AST) -> str | None:
    """``a`` of ``a.b(..).c[0].d``; None when the chain does not start at a name."""
    while True:
        if isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Name):
            return node.id
        else:
            return None


def _model_strings(call: ast.Call) -> list[str]:
    func = dotted(call.func) or ""
    if func.endswith("get_user_model"):
        return ["@settings.AUTH_USER_MODEL"]
    if func.endswith("get_model"):
        args = [a.value for a in call.args if isinstance(a, ast.Constant)]
        strings = [a for a in args if isinstance(a, str)]
        if len(strings) == 2:
            return [f"{strings[0]}.{strings[1]}"]
        if len(strings) == 1 and "." in strings[0]:
            return [strings[0]]
    return []


def _urls(tree: ast.Module, consts: dict[str, str]
          ) -> tuple[list[UrlFact], list[RouterFact], list[tuple[str, str]]]:
    """URL facts, router registrations, and what each module-level list splices in.

    >>> src = ("api = [path('cart/', cart), *router.urls]\\n"
    ...        "urlpatterns = [path('api/', include(api))]\\n")
    >>> urls, _, splices = _urls(ast.parse(src), {})
    >>> [(u.list, u.route, u.include) for u in urls]
    [('api', 'cart/', None), ('urlpatterns', 'api/', '@api')]
    >>> splices
    [('api', 'router.urls')]
    """
    lists = _UrlLists()
    for stmt in module_level(tree.body):
        lists.statement(stmt)
    urls: list[UrlFact] = []
    routers: list[RouterFact] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = dotted(node.func) or ""
        short = func.rsplit(".", 1)[-1]
        if short in URL_FUNCS and node.args:
            fact = _url_fact(node, short, consts, lists.of.get(id(node)))
            if fact is not None:
                urls.append(fact)
        elif short == "register" and "." in func and len(node.args) >= 2:
            prefix = _const_str(node.args[0], consts)
            viewset = dotted(node.args[1])
            if prefix is not None and viewset:
                routers.append(RouterFact(func.rsplit(".", 1)[0], prefix, viewset, node.lineno))
    return urls, routers, lists.splices


class _UrlLists:
    """Which module-level list each ``path()`` call is written in, and what the lists
    splice in: ``NAME = [...]``, ``NAME += [...]``, ``NAME.extend(...)``, ``NAME.append()``,
    ``NAME.insert(i, ...)``, ``NAME = [...] + other + router.urls``, ``*router.urls``."""

    def __init__(self) -> None:
        self.of: dict[int, str] = {}  # id of a path() call -> its list
        self.splices: list[tuple[str, str]] = []

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.For | ast.AsyncFor | ast.While):  # plugins' patterns
            for inner in module_level(stmt.body + stmt.orelse):
                self.statement(inner)
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    self.value(stmt.value, target.id)
        elif isinstance(stmt, ast.AnnAssign | ast.AugAssign):
            if isinstance(stmt.target, ast.Name) and stmt.value is not None:
                self.value(stmt.value, stmt.target.id)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            func = stmt.value.func
            if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                    and func.attr in ("append", "extend", "insert")):
                args = stmt.value.args
                for arg in args[1:] if func.attr == "insert" else args:
                    self.value(arg, func.value.id)

    def value(self, node: ast.AST, name: str) -> None:
        if isinstance(node, ast.Call):
            if _is_url_call(node):
                self.of[id(node)] = name
                self._inline_include(node)
                return
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                self.value(arg, name)  # format_suffix_patterns([...]), i18n_patterns(...)
        elif isinstance(node, ast.Name | ast.Attribute):
            spliced = dotted(node)
            if spliced and spliced != name:
                self.splices.append((name, spliced))
        else:  # lists, tuples, ``*x``, ``a + b``, comprehensions
            for child in ast.iter_child_nodes(node):
                self.value(child, name)

    def _inline_include(self, call: ast.Call) -> None:
        """``path("x/", include([path(...), ...]))``: the inner calls form a list of their own."""
        target = call.args[1] if len(call.args) > 1 else _kwarg(call, "view")
        arg = _include_arg(target)
        if isinstance(arg, ast.List | ast.Tuple):
            self.value(arg, _inline_name(call))


def _inline_name(call: ast.Call) -> str:
    return f"<inline:{call.lineno}:{call.col_offset}>"


def _include_arg(target: ast.AST | None) -> ast.AST | None:
    """What ``include(...)`` includes: its argument, the patterns of ``(patterns, "ns")``."""
    if not (isinstance(target, ast.Call) and (dotted(target.func) or "").endswith("include")):
        return None
    arg = target.args[0] if target.args else _kwarg(target, "arg")
    if isinstance(arg, ast.Tuple) and arg.elts and not _is_url_call(arg.elts[0]):
        arg = arg.elts[0]  # (patterns, app_name)
    return arg


def _is_url_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and (
        (dotted(node.func) or "").rsplit(".", 1)[-1] in URL_FUNCS)


def _url_fact(node: ast.Call, func: str, consts: dict[str, str],
              in_list: str | None = None) -> UrlFact | None:
    route = _const_str(node.args[0], consts)
    if route is None:
        return None
    target = node.args[1] if len(node.args) > 1 else _kwarg(node, "view")
    name_node = _kwarg(node, "name")
    name = name_node.value if isinstance(name_node, ast.Constant) else None
    include: str | None = None
    view: str | None = None
    if isinstance(target, ast.Call) and (dotted(target.func) or "").endswith("include"):
        arg = _include_arg(target)
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            include = arg.value
        elif isinstance(arg, ast.List | ast.Tuple):
            include = f"@{_inline_name(node)}"
        elif arg is not None and (d := dotted(arg)):
            include = f"@{d}"
    elif isinstance(target, ast.Call):
        view = dotted(target.func)
        if view and view.endswith(".as_view"):
            view = view[: -len(".as_view")]
    elif target is not None:
        view = dotted(target)
    return UrlFact(route=route, regex=func != "path", view=view, include=include,
                   line=node.lineno, name=name if isinstance(name, str) else None, list=in_list)


def python_facts(source: str | bytes, module: str, is_package: bool = False,
                 path: str = "") -> FileFacts:
    """Facts of one file; a file that does not parse yields ``FileFacts.error``."""
    parser = "ast"
    try:
        tree = ast.parse(source, filename=path or module)
    except SyntaxError as exc:  # newer syntax than ours? libcst reads 3.0 to 3.15
        try:
            tree, parser = parse_newer(source), "libcst"
        except (SyntaxError, ValueError, UnicodeDecodeError, MemoryError, RecursionError):
            return _unreadable(path, module, is_package, exc)
    except (ValueError, UnicodeDecodeError, MemoryError, RecursionError) as exc:
        return _unreadable(path, module, is_package, exc)
    text_lines = (source.count(b"\n") if isinstance(source, bytes) else source.count("\n")) + 1
    settings = (b"ATOMIC_REQUESTS" in source) if isinstance(source, bytes) else (
        "ATOMIC_REQUESTS" in source)  # only then walk the module's assignments for it
    return _file_facts(tree, module, is_package, path, text_lines, parser, settings)


def _unreadable(path: str, module: str, is_package: bool, exc: Exception) -> FileFacts:
    return FileFacts(path=path, module=module, is_package=is_package, lines=0,
                     error=f"{type(exc).__name__}: {exc}".splitlines()[0][:200])


def _file_facts(tree: ast.Module, module: str, is_package: bool, path: str, lines: int,
                parser: str = "ast", settings: bool = True) -> FileFacts:
    c = _Collector(module, is_package)
    body = module_level(tree.body)
    c.module_consts(ast.Module(body=body, type_ignores=[]))
    classes = tuple(_class_fact(n) for n in body if isinstance(n, ast.ClassDef))
    imports: list[ast.Import | ast.ImportFrom] = []
    defs = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
    connects: list[tuple[str, str, str]] = []
    units = [_unit(n, n.name, "class" if isinstance(n, ast.ClassDef) else "function", c.consts,
                   imports, connects) for n in body if isinstance(n, defs)]
    # the module unit: what is left of the body once defs (at any module level) are units
    rest = ast.Module(body=[_without_defs(n) for n in tree.body if not isinstance(n, defs)],
                      type_ignores=[])
    units.append(_unit(rest, "<module>", "module", c.consts, imports, connects))
    c.imports(imports)
    urls, routers, splices = (_urls(tree, c.consts) if _looks_like_urls(module, c)
                              else ([], [], []))
    return FileFacts(
        path=path, module=module, is_package=is_package, lines=lines,
        bindings=tuple(sorted(c.bindings.items())), imported=tuple(c.imported),
        classes=classes, units=tuple(units), urls=tuple(urls), routers=tuple(routers),
        url_splices=tuple(dict.fromkeys(splices)),
        consts=tuple(sorted(c.consts.items())), uses_django=c.uses_django,
        stars=tuple(c.stars), exports=_exports(body), parser=parser,
        atomic_requests=settings and _atomic_requests(body), connects=tuple(connects),
    )


def _atomic_requests(body: list[ast.stmt]) -> bool:
    """True when a module-level assignment sets ``ATOMIC_REQUESTS`` to True: a settings
    module whose views each run in one transaction.

    >>> f = python_facts("DATABASES = {'default': {'ATOMIC_REQUESTS': True}}", "settings")
    >>> f.atomic_requests
    True
    """
    for node in body:
        if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
            continue
        for child in ast.walk(node):
            if isinstance(child, ast.Dict) and any(
                    isinstance(k, ast.Constant) and k.value == "ATOMIC_REQUESTS"
                    and isinstance(v, ast.Constant) and v.value is True
                    for k, v in zip(child.keys, child.values, strict=True)):
                return True
            if (isinstance(child, ast.Subscript) and isinstance(child.slice, ast.Constant)
                    and child.slice.value == "ATOMIC_REQUESTS" and isinstance(
                        node.value, ast.Constant) and node.value.value is True):
                return True
    return False


def module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements Python runs at import, in order: the module body and the bodies of
    module-level ``if``/``try``/``with`` blocks (every branch: which one runs depends on
    settings or installed packages, and a framework's swappable models live there).

    >>> tree = ast.parse("try:\\n    class A: pass\\nexcept ImportError:\\n    class B: pass")
    >>> [n.name for n in module_level(tree.body) if isinstance(n, ast.ClassDef)]
    ['A', 'B']
    """
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If):
            out += module_level(node.body) + module_level(node.orelse)
        elif isinstance(node, ast.Try | ast.TryStar):
            out += module_level(node.body)
            for handler in node.handlers:
                out += module_level(handler.body)
            out += module_level(node.orelse) + module_level(node.finalbody)
        elif isinstance(node, ast.With | ast.AsyncWith):
            out += module_level(node.body)
        else:
            out.append(node)
    return out


def _without_defs(node: ast.stmt) -> ast.stmt:
    """A module-level block with the defs inside it dropped (they are units of their own)."""
    if not isinstance(node, ast.If | ast.Try | ast.TryStar | ast.With | ast.AsyncWith):
        return node
    defs = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
    return ast.Module(body=[_without_defs(n) for n in module_level([node])
                            if not isinstance(n, defs)], type_ignores=[])  # type: ignore[return-value]


def _exports(body: list[ast.stmt]) -> tuple[str, ...] | None:
    """``__all__`` as a list or tuple of string constants, else None (no ``__all__``)."""
    for node in body:
        if (isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign)
                and isinstance(t := (node.targets[0] if isinstance(node, ast.Assign)
                                     else node.target), ast.Name) and t.id == "__all__"
                and isinstance(node.value, ast.List | ast.Tuple)):
            return tuple(e.value for e in node.value.elts
                         if isinstance(e, ast.Constant) and isinstance(e.value, str))
    return None


def needs_full_parse(data: bytes) -> bool:
    """Whether a file's text has anything but imports the passes could use.

    >>> needs_full_parse(b"import math\\ndef f(x):\\n    return math.sqrt(x)\\n")
    False
    >>> needs_full_parse(b"def f():\\n    return Product.objects.all()\\n")
    True
    """
    return any(marker in data for marker in _MATTERS)


def import_facts(data: bytes, module: str, is_package: bool = False, path: str = ""
                 ) -> FileFacts:
    """Facts of a file read for its import statements alone, without parsing the file.

    Each line that starts an import (at any indentation, continued through brackets or a
    backslash) is parsed on its own; a line that only looks like one (inside a string)
    and does not parse is ignored. The file's syntax is not checked.

    >>> f = import_facts(b"import os\\nfrom .models import (\\n    A,\\n    B)\\n", "shop.views")
    >>> [name for name, _ in f.imported], f.imports_only
    (['os', 'shop.models.A', 'shop.models.B'], True)
    """
    nodes: list[ast.Import | ast.ImportFrom] = []
    line, counted = 1, 0
    for match in _IMPORT.finditer(data):
        end = _statement_end(data, match)
        line += data.count(b"\n", counted, match.start())
        counted = match.start()
        try:
            tree = ast.parse(data[match.start():end].decode("utf-8", "replace").strip())
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                node.lineno = line
                nodes.append(node)
    c = _Collector(module, is_package)
    c.imports(nodes)
    return FileFacts(path=path, module=module, is_package=is_package,
                     lines=data.count(b"\n") + 1, bindings=tuple(sorted(c.bindings.items())),
                     imported=tuple(c.imported), uses_django=c.uses_django, imports_only=True,
                     stars=tuple(c.stars))


def _statement_end(data: bytes, match: re.Match[bytes]) -> int:
    """End of an import statement: through its closing bracket or continued lines."""
    end = match.end()
    text = match.group()
    if b"(" in text and b")" not in text:
        close = data.find(b")", end)
        return len(data) if close < 0 else close + 1
    while text.rstrip().endswith(b"\\"):
        nxt = data.find(b"\n", end + 1)
        nxt = len(data) if nxt < 0 else nxt
        text, end = data[end + 1:nxt], nxt
    return end


def _looks_like_urls(module: str, c: _Collector) -> bool:
    return module.rsplit(".", 1)[-1].startswith("urls") or "urlpatterns" in c.bindings or any(
        t.startswith(("django.urls", "django.conf.urls", "rest_framework.routers"))
        for t in c.bindings.values())
