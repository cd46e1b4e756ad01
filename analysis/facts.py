"""Plain data that the passes hand to each other.

Per-file facts (:class:`FileFacts`) come from one file's syntax tree only, so they are
cached by content hash; everything after them (models, endpoints, graph) is recomputed on
each run from the cached facts, which is cheap.

A *reference* to another name is stored as written: ``"@Product"`` or
``"@settings.AUTH_USER_MODEL"`` for an expression, ``"store.Product"`` for a string literal
(Django's lazy reference), so the model pass can resolve both the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldFact:
    """A relation field declared on a class: ``customer = models.ForeignKey(...)``."""

    name: str
    kind: str  # ForeignKey, OneToOneField, ManyToManyField, GenericForeignKey, GenericRelation
    target: str  # "@Expr" or a lazy string such as "app.Model", "self", "Model"
    line: int
    through: str | None = None
    db_table: str | None = None
    parent_link: bool = False
    reference: bool = False  # nullable, or on_delete other than CASCADE: not a part-of link


@dataclass(frozen=True)
class ClassFact:
    """A top-level class: its bases as dotted text, ``Meta`` options and relation fields."""

    name: str
    line: int
    bases: tuple[str, ...]
    meta: tuple[tuple[str, str], ...]  # Meta options with a constant value, as text
    attrs: tuple[tuple[str, str], ...]  # class-level constant assignments (AppConfig.label)
    fields: tuple[FieldFact, ...]
    managers: tuple[tuple[str, str], ...]  # (attribute, manager class expression)
    has_model_fields: bool = False


@dataclass(frozen=True)
class SqlFact:
    """A raw SQL string found in code, with the call that runs it."""

    sql: str
    line: int
    via: str  # execute, executemany, raw, RawSQL, extra, RunSQL
    tables: tuple[str, ...] = ()  # extra(tables=[...]) names tables directly


@dataclass(frozen=True)
class AtomicFact:
    """A database transaction in code: ``@transaction.atomic`` on a function (or a method)
    or a ``with transaction.atomic():`` block, outermost only (an inner one is a savepoint
    of the same transaction). What runs inside: the names whose rows it writes, the names it
    refers to (functions it calls, signals it sends) and the raw SQL it runs."""

    line: int
    how: str  # "decorator" | "with"
    writes: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()
    sql: tuple[SqlFact, ...] = ()


@dataclass(frozen=True)
class UnitFact:
    """A top-level function or class (a *usage unit*) and the names it references."""

    name: str
    line: int
    kind: str  # function | class | module
    refs: tuple[str, ...]
    model_strings: tuple[str, ...] = ()  # apps.get_model("app", "Model"), get_user_model()
    sql: tuple[SqlFact, ...] = ()
    writes: tuple[str, ...] = ()  # names whose rows it writes (create, save, update, delete)
    atomic: tuple[AtomicFact, ...] = ()  # transactions it opens
    receives: tuple[tuple[str, str], ...] = ()  # (signal, sender or "") of @receiver(...)


@dataclass(frozen=True)
class UrlFact:
    """One entry of a ``urlpatterns`` list (``path``, ``re_path``, ``url``) or a router."""

    route: str
    regex: bool
    view: str | None  # dotted expression of the view, ``.as_view`` removed
    include: str | None  # module name, "@router.urls", "@local_list" or "@<inline:LINE>"
    line: int
    name: str | None = None
    # the module-level list it is written in ("urlpatterns", "api", "<inline:LINE>" for
    # ``include([...])``), None outside any (a function's body)
    list: str | None = None


@dataclass(frozen=True)
class RouterFact:
    """``router.register(prefix, ViewSet)`` in a urls module."""

    router: str
    prefix: str
    viewset: str
    line: int


@dataclass(frozen=True)
class FileFacts:
    """Everything the analysis needs from one Python file."""

    path: str
    module: str
    is_package: bool
    lines: int
    bindings: tuple[tuple[str, str], ...] = ()  # local name -> absolute dotted target
    imported: tuple[tuple[str, int], ...] = ()  # candidate module names, with line
    classes: tuple[ClassFact, ...] = ()
    units: tuple[UnitFact, ...] = ()
    urls: tuple[UrlFact, ...] = ()
    routers: tuple[RouterFact, ...] = ()
    # (list, name): the module-level list takes in whatever ``name`` holds (``*router.urls``,
    # ``urlpatterns += api``, ``urlpatterns = [...] + other_list``); resolved when walked
    url_splices: tuple[tuple[str, str], ...] = ()
    consts: tuple[tuple[str, str], ...] = ()
    uses_django: bool = False
    error: str | None = None
    imports_only: bool = False  # read for its imports alone (see python_facts.import_facts)
    stars: tuple[str, ...] = ()  # modules star-imported (``from .models import *``)
    exports: tuple[str, ...] | None = None  # ``__all__``, when the module declares it
    parser: str = "ast"  # "ast", or the fallback parser for syntax newer than ours
    atomic_requests: bool = False  # sets a database's ATOMIC_REQUESTS to True (settings)
    connects: tuple[tuple[str, str, str], ...] = ()  # signal.connect(receiver, sender=...)


@dataclass(frozen=True)
class ModelInfo:
    """A resolved Django model."""

    key: str  # app_label.ModelName
    qualname: str  # module.ClassName
    app_label: str
    name: str
    path: str
    line: int
    table: str
    abstract: bool = False
    proxy: bool = False
    parents: tuple[str, ...] = ()  # keys of concrete model parents (multi-table inheritance)
    managers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Relation:
    """A relation between two project models, with where it is declared."""

    source: str
    target: str
    kind: str  # fk, o2o, m2m, through, generic, mti, proxy
    field: str
    path: str
    line: int
    inherited_from: str | None = None
    reference: bool = False  # see FieldFact.reference


@dataclass(frozen=True)
class Endpoint:
    """A URL pattern and the view that serves it."""

    template: str  # "/api/products/{pk}/"
    view: str  # qualified name of the view
    name: str | None
    path: str
    line: int
    regex: bool = False
    methods: tuple[str, ...] = ()


@dataclass(frozen=True)
class Usage:
    """A unit of code (function, class, module body) and the models it uses."""

    unit: str  # module.qualname
    path: str
    line: int
    models: tuple[str, ...]
    module: str
    writes: tuple[str, ...] = ()  # models it creates, saves, updates or deletes (ORM)


@dataclass(frozen=True)
class TableAccess:
    """Tables a statement reads, writes and locks (``SELECT ... FOR UPDATE``)."""

    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()
    locks: frozenset[str] = frozenset()
    error: str | None = None


@dataclass(frozen=True)
class Statement:
    """One executed (or found) SQL statement, attributed to its request and endpoint."""

    sql: str
    request: str | None = None  # request id or transaction id: co-access unit
    endpoint: str | None = None
    source: str = ""  # file:line or log:line
    in_transaction: bool = False


@dataclass
class SqlSummary:
    """What the SQL pass learnt, per statement fingerprint."""

    shapes: dict[str, TableAccess] = field(default_factory=dict)
    shape_sql: dict[str, str] = field(default_factory=dict)
    shape_count: dict[str, int] = field(default_factory=dict)
    statements: int = 0
    bad_lines: int = 0  # log lines skipped: not JSON, no sql, or a field of the wrong type
    control: int = 0  # SET, SAVEPOINT, BEGIN, COMMIT...: counted, not parsed
    unparsed: dict[str, str] = field(default_factory=dict)  # fingerprint -> reason
    requests: dict[str, tuple[str | None, set[str], set[str]]] = field(default_factory=dict)
    # (endpoint, tables read, tables written) of each request or lone statement -> count
    request_shapes: dict[tuple[str | None, frozenset[str], frozenset[str]], int] = field(
        default_factory=dict)
    endpoint_tables: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    endpoint_shape: dict[str, str] = field(default_factory=dict)  # an example fingerprint
    shape_source: dict[str, str] = field(default_factory=dict)  # where a shape was first seen
    # transactions of a log that wrote two tables or more, by (endpoint, tables written):
    # [how many, where the first one began]
    transactions: dict[tuple[str | None, frozenset[str]], list[Any]] = field(
        default_factory=dict)
