"""Pass 4: which classes are Django models, their app labels, tables and relations.

Handles ``models/`` packages, abstract bases and mixins across modules (their relation
fields are inherited by each concrete child), proxy and multi-table inheritance,
``Meta.app_label`` / ``db_table``, ``AppConfig.label``, lazy string relations
(``"app.Model"``, ``"Model"``, ``"self"``, ``settings.AUTH_USER_MODEL``), ``through=``,
generic relations and custom managers. Relations to models outside the project
(``auth.Group``, ``contenttypes.ContentType``) are counted, not drawn.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from analysis.extract_usage import is_domain_file, is_domain_module
from analysis.facts import ClassFact, FieldFact, ModelInfo, Relation
from analysis.resolve import Resolver
from analysis.state import Analysis

# Bases outside the project that make a class a Django model.
MODEL_BASES = frozenset({
    "Model", "AbstractUser", "AbstractBaseUser", "PermissionsMixin", "MPTTModel",
    "PolymorphicModel", "TimeStampedModel", "TitleDescriptionModel", "TimeFramedModel",
    "StatusModel", "SoftDeletableModel", "UUIDModel", "AbstractBaseSession", "Page",
    "ClusterableModel", "OrderedModel", "SortableMixin", "MP_Node", "NS_Node", "AL_Node",
    "PolymorphicMPTTModel", "TranslatableModel", "TranslatedFieldsModel",
})
# Django modules whose classes are never models, though some share a name with a model
# base (``django.core.paginator.Page``): only ``django.db`` and ``django.contrib`` hold any.
NOT_MODEL_MODULES = ("django.",)
MODEL_MODULES = ("django.db.", "django.contrib.")
USER_BASES = frozenset({"AbstractUser", "AbstractBaseUser"})
RELATION_KIND = {"ForeignKey": "fk", "TreeForeignKey": "fk", "ParentalKey": "fk",
                 "OneToOneField": "o2o", "ManyToManyField": "m2m",
                 "ParentalManyToManyField": "m2m", "GenericRelation": "generic"}


_M2M = dict[str, tuple[str, str]]


@dataclass(frozen=True)
class _Candidate:
    qualname: str
    module: str
    path: str
    cls: ClassFact


def extract_models(a: Analysis) -> Analysis:
    """Resolve models and relations from the per-file class facts."""
    r: Resolver = a.resolve
    paths = {f.module: f.path for f in a.facts}
    candidates = {q: _Candidate(q, r.class_module[q], paths[r.class_module[q]], c)
                  for q, c in r.classes.items()}
    is_model: dict[str, bool] = {}
    for q in candidates:
        _is_model(q, candidates, r, is_model, ())
    labels = _app_labels(a)
    models: dict[str, ModelInfo] = {}
    for q, cand in candidates.items():
        if is_model.get(q) and (a.options.include_tests
                                or is_domain_file(cand.module, cand.path)):
            info = _model_info(cand, labels, r, candidates, is_model)
            models[q] = info
    models = _inherit_tables(models)
    auth_user = _auth_user_model(a, models, candidates, r)
    relations, generic, external, m2m = _relations(models, candidates, r, auth_user)
    by_key = {m.key: m for m in models.values()}
    return replace(a, models=by_key, relations=tuple(relations), generic_models=generic,
                   external_refs=dict(external), m2m_tables=m2m, auth_user=auth_user)


def _base_names(q: str, cand: _Candidate, r: Resolver) -> list[str]:
    return [r.resolve(cand.module, b) or b for b in cand.cls.bases]


def _is_model(q: str, cands: dict[str, _Candidate], r: Resolver, memo: dict[str, bool],
              stack: tuple[str, ...]) -> bool:
    if q in memo:
        return memo[q]
    if q in stack or q not in cands:
        return False
    cand = cands[q]
    result = False
    for base in _base_names(q, cand, r):
        if base in cands:
            result = _is_model(base, cands, r, memo, (*stack, q))
        else:
            result = _external_model_base(base, cand.cls)
        if result:
            break
    memo[q] = result
    return result


def _external_model_base(base: str, cls: ClassFact) -> bool:
    """Whether a base from outside the project makes ``cls`` a model.

    >>> plain = ClassFact("P", 1, (), (), (), (), ())
    >>> _external_model_base("django.core.paginator.Page", plain)
    False
    >>> _external_model_base("django.db.models.Model", plain)
    True
    """
    last = base.rsplit(".", 1)[-1]
    if last not in MODEL_BASES:
        return False
    if base.startswith(NOT_MODEL_MODULES) and not base.startswith(MODEL_MODULES):
        return False
    if last == "Model":
        return "models" in base or cls.has_model_fields
    return "." in base or cls.has_model_fields or bool(cls.meta)


def _app_labels(a: Analysis) -> dict[str, str]:
    """App package -> label, from ``AppConfig`` subclasses (``name`` and ``label``)."""
    labels: dict[str, str] = {}
    r: Resolver = a.resolve
    for f in a.facts:
        for c in f.classes:
            attrs = dict(c.attrs)
            if "name" in attrs and any(b.endswith("AppConfig") for b in c.bases):
                name = attrs["name"]
                package = r.module(name) or name
                labels[package] = attrs.get("label", name.rsplit(".", 1)[-1])
    return labels


def app_package(module: str) -> str:
    """The app package a models module belongs to: ``shop.store.models.product`` ->
    ``shop.store``.

    >>> app_package("shop.store.models.product"), app_package("blog.entities")
    ('shop.store', 'blog')
    >>> app_package("shop.core.models.models")
    'shop.core'
    """
    parts = module.split(".")
    if "models" in parts[1:]:  # the first one: ``app.models.models`` is app ``app``
        return ".".join(parts[: parts.index("models", 1)])
    return ".".join(parts[:-1]) or parts[0]


def _model_info(cand: _Candidate, labels: dict[str, str], r: Resolver,
                cands: dict[str, _Candidate], is_model: dict[str, bool]) -> ModelInfo:
    meta = dict(cand.cls.meta)
    package = app_package(cand.module)
    label = meta.get("app_label") or labels.get(package) or package.rsplit(".", 1)[-1]
    parents = _concrete_parents(cand.qualname, cands, r, is_model, ())
    return ModelInfo(
        key=f"{label}.{cand.cls.name}", qualname=cand.qualname, app_label=label,
        name=cand.cls.name, path=cand.path, line=cand.cls.line,
        table="" if meta.get("abstract") == "True" else (
            meta.get("db_table") or f"{label}_{cand.cls.name.lower()}"),
        abstract=meta.get("abstract") == "True", proxy=meta.get("proxy") == "True",
        parents=parents, managers=tuple(f"{n}: {m}" for n, m in cand.cls.managers),
    )


def _concrete_parents(q: str, cands: dict[str, _Candidate], r: Resolver,
                      is_model: dict[str, bool], stack: tuple[str, ...]) -> tuple[str, ...]:
    """The concrete models ``q`` inherits from, through abstract bases in between (Django's
    multi-table inheritance: ``GroupTask(AbstractGroupTask)`` with an abstract base built on
    the concrete ``Task`` has a parent link to ``Task``)."""
    out: list[str] = []
    for b in _base_names(q, cands[q], r):
        if not is_model.get(b) or b in stack:
            continue
        if dict(cands[b].cls.meta).get("abstract") != "True":
            out.append(b)
        else:
            out += [p for p in _concrete_parents(b, cands, r, is_model, (*stack, q))
                    if p not in out]
    return tuple(out)


def _inherit_tables(models: dict[str, ModelInfo]) -> dict[str, ModelInfo]:
    """Proxy models share their concrete parent's table; parents become keys."""
    out: dict[str, ModelInfo] = {}
    for q, m in models.items():
        parents = tuple(models[p].key for p in m.parents if p in models)
        table = m.table
        if m.proxy and m.parents and m.parents[0] in models:
            table = models[m.parents[0]].table
        out[q] = replace(m, parents=parents, table=table)
    return out


def _auth_user_model(a: Analysis, models: dict[str, ModelInfo],
                     cands: dict[str, _Candidate], r: Resolver) -> str:
    """``settings.AUTH_USER_MODEL``; without settings in the tree (a reusable app, a
    framework), the one concrete project model built on ``AbstractUser`` or
    ``AbstractBaseUser``, if there is exactly one; else Django's ``auth.User``."""
    for f in a.facts:
        value = dict(f.consts).get("AUTH_USER_MODEL")
        if value and is_domain_module(f.module):
            return value
    users = [m.key for q, m in models.items() if not m.abstract and not m.proxy
             and _has_base(q, cands, r, USER_BASES, ())]
    return users[0] if len(users) == 1 else "auth.User"


def _has_base(q: str, cands: dict[str, _Candidate], r: Resolver, names: frozenset[str],
              stack: tuple[str, ...]) -> bool:
    for base in _base_names(q, cands[q], r):
        if base.rsplit(".", 1)[-1] in names and base not in cands:
            return True
        if base in cands and base not in stack and _has_base(base, cands, r, names,
                                                             (*stack, q)):
            return True
    return False


def _ancestors(q: str, cands: dict[str, _Candidate], r: Resolver,
               models: dict[str, ModelInfo]) -> list[str]:
    """Abstract bases and mixins of a class, nearest first; stops at concrete parents,
    whose fields stay theirs (multi-table inheritance)."""
    seen: list[str] = []
    todo = [q]
    while todo:
        cur = todo.pop(0)
        for base in _base_names(cur, cands[cur], r):
            concrete = base in models and not models[base].abstract
            if base in cands and base not in seen and base != q and not concrete:
                seen.append(base)
                todo.append(base)
    return seen


def _relations(models: dict[str, ModelInfo], cands: dict[str, _Candidate], r: Resolver,
               auth_user: str) -> tuple[list[Relation], frozenset[str], Counter[str], _M2M]:
    by_key = {m.key.lower(): m.key for m in models.values()}
    relations: list[Relation] = []
    m2m: dict[str, tuple[str, str]] = {}
    generic: set[str] = set()
    external: Counter[str] = Counter()
    for q, m in models.items():
        if m.abstract:
            continue
        owners: list[tuple[str, str | None]] = [(q, None)]
        owners += [(anc, anc) for anc in _ancestors(q, cands, r, models)]
        for owner, inherited in owners:
            for fld in cands[owner].cls.fields:
                if fld.kind == "GenericForeignKey":
                    generic.add(m.key)
                    continue
                target = _target(fld.target, m, cands[owner].module, r, models, by_key,
                                 auth_user)
                if target is None:
                    external[fld.target] += 1
                    continue
                kind = "o2o" if fld.parent_link else RELATION_KIND.get(fld.kind, "fk")
                src = inherited and models.get(inherited)
                relations.append(Relation(
                    m.key, target, kind, fld.name, cands[owner].path, fld.line,
                    src.key if src else None, fld.reference))
                relations.extend(_through(fld, m, cands[owner], r, models, by_key, auth_user))
                if kind == "m2m" and fld.through is None:
                    table = fld.db_table or f"{m.table}_{fld.name}"
                    m2m[table.lower()] = (m.key, target)
        relations.extend(_inheritance(m, models, cands[q]))
    return relations, frozenset(generic), external, m2m


def _through(fld: FieldFact, m: ModelInfo, owner: _Candidate, r: Resolver,
             models: dict[str, ModelInfo], by_key: dict[str, str],
             auth_user: str) -> list[Relation]:
    if fld.through is None:
        return []
    through = _target(fld.through, m, owner.module, r, models, by_key, auth_user)
    if through is None:
        return []
    return [Relation(m.key, through, "through", fld.name, owner.path, fld.line)]


def _inheritance(m: ModelInfo, models: dict[str, ModelInfo], cand: _Candidate
                 ) -> list[Relation]:
    kind = "proxy" if m.proxy else "mti"
    return [Relation(m.key, parent, kind, "<parent>", cand.path, cand.cls.line)
            for parent in m.parents]


def _target(ref: str, m: ModelInfo, module: str, r: Resolver, models: dict[str, ModelInfo],
            by_key: dict[str, str], auth_user: str) -> str | None:
    if ref.startswith("@"):
        expr = ref[1:]
        if expr.endswith("AUTH_USER_MODEL"):
            return by_key.get(auth_user.lower())
        q = r.resolve(module, expr)
        if q in models:
            return models[q].key
        if "." not in expr:  # a bare name, e.g. a model later in the same module
            return by_key.get(f"{m.app_label}.{expr}".lower())
        return None
    if ref == "self":
        return m.key
    key = ref if "." in ref else f"{m.app_label}.{ref}"
    return by_key.get(key.lower())
