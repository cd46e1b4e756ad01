"""Database transactions that write the tables of more than one context.

Not a pass: a helper of the plan (like :mod:`analysis.context_access`). Extracting a
context whose tables are written in the same database transaction as another context's
turns that transaction into a saga, a step and a compensation per context, and that is
the costliest part of an extraction (docs/analysis.md, "Extraction order"). Two sources:

* **code**: each outermost ``@transaction.atomic`` function or ``with transaction.atomic()``
  block, and, when a settings module sets ``ATOMIC_REQUESTS``, each view. What it writes is
  what runs inside: the ORM writes and raw SQL of the block, of the project functions it
  calls (followed a few steps) and of the signal receivers its writes and ``send`` calls
  reach (``@receiver(post_save, sender=Order)``, ``signal.connect(handler, sender=...)``);
* **query logs**: the statements a request runs inside one transaction (between BEGIN and
  COMMIT, or flagged ``in_transaction`` by the capture middleware), see
  :meth:`analysis.mine_sql._Miner.transaction`.

A transaction spans contexts when the tables it writes belong to two contexts or more;
infrastructure tables (outbox, audit log) belong to none and are left out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from analysis.extract_usage import is_domain_file
from analysis.facts import FileFacts, SqlFact, UnitFact
from analysis.mine_sql import fingerprint
from analysis.state import Analysis

MODEL_SIGNALS = frozenset({"pre_save", "post_save", "pre_delete", "post_delete",
                           "m2m_changed"})
MAX_DEPTH = 4  # calls followed from a transaction (receivers count as one more call)
MAX_SHOWN = 20  # evidence items kept per context in the report


@dataclass(frozen=True)
class Transaction:
    """One transaction in code or in a log, with the tables it writes."""

    where: str  # file:line of the atomic block or view; log:line of the first statement
    how: str  # "transaction.atomic", "ATOMIC_REQUESTS" or "query log"
    unit: str  # the function, view or endpoint that opens it
    tables: frozenset[str]
    via: tuple[str, ...] = ()  # functions and signal receivers reached that write, in order
    count: int = 1  # times seen (query logs)


def spanning_transactions(a: Analysis) -> list[tuple[Transaction, list[int]]]:
    """Each transaction that writes tables of two contexts or more, with those contexts."""
    owner = {t: a.partition[ms[0]] for t, ms in a.table_models.items()
             if ms and ms[0] in a.partition}
    out = []
    for tx in [*_code_transactions(a), *_log_transactions(a)]:
        contexts = sorted({owner[t] for t in tx.tables if t in owner})
        if len(contexts) > 1:
            out.append((tx, contexts))
    return out


def _log_transactions(a: Analysis) -> list[Transaction]:
    return [Transaction(where=source, how="query log", unit=endpoint or "?", tables=tables,
                        count=count)
            for (endpoint, tables), (count, source) in sorted(
                a.sql.transactions.items(), key=lambda kv: (str(kv[0][0]), sorted(kv[0][1])))]


def _code_transactions(a: Analysis) -> list[Transaction]:
    if a.resolve is None:
        return []
    graph = _CallGraph(a)
    out = []
    for f in a.facts:
        if not is_domain_file(f.module, f.path):
            continue
        for u in f.units:
            for t in u.atomic:
                tables, via = graph.writes(f.module, t.writes, t.refs, t.sql)
                out.append(Transaction(f"{f.path}:{t.line}", "transaction.atomic",
                                       f"{f.module}.{u.name}", tables, via))
    if any(f.atomic_requests for f in a.facts):
        for e in a.endpoints:
            found = graph.units.get(e.view)
            if found is not None:
                f, u = found
                tables, via = graph.writes(f.module, u.writes, u.refs, u.sql)
                out.append(Transaction(f"{f.path}:{u.line}", "ATOMIC_REQUESTS", e.template,
                                       tables, via))
    return out


class _CallGraph:
    """Project functions, what they write, and the signal receivers of the project."""

    def __init__(self, a: Analysis) -> None:
        self.a = a
        self.r = a.resolve
        self.by_qual = {m.qualname: m.key for m in a.models.values() if not m.abstract}
        self.keys = {k.lower(): k for k in self.by_qual.values()}
        self.units: dict[str, tuple[FileFacts, UnitFact]] = {
            f"{f.module}.{u.name}": (f, u) for f in a.facts if is_domain_file(f.module, f.path)
            for u in f.units if u.kind != "module"}
        # (signal, sender model key or "" for any sender) -> receiver units
        self.receivers: dict[tuple[str, str], list[str]] = defaultdict(list)
        for f in a.facts:
            if not is_domain_file(f.module, f.path):
                continue
            for u in f.units:
                for signal, sender in u.receives:
                    self._receiver(f.module, signal, sender, f"{f.module}.{u.name}")
            for signal, handler, sender in f.connects:
                q = self.r.resolve(f.module, handler)
                if q in self.units:
                    self._receiver(f.module, signal, sender, q)

    def _receiver(self, module: str, signal: str, sender: str, unit: str) -> None:
        model = self._model(module, sender)
        if sender and model is None:
            return  # a sender we cannot resolve: better unseen than fired for every model
        self.receivers[(self._signal(module, signal), model or "")].append(unit)

    def _signal(self, module: str, signal: str) -> str:
        last = signal.rsplit(".", 1)[-1]
        if last in MODEL_SIGNALS:
            return last
        return self.r.resolve(module, signal) or f"{module}.{signal}"

    def _model(self, module: str, ref: str) -> str | None:
        if ref == "@settings.AUTH_USER_MODEL":
            return self.a.auth_user if self.a.auth_user in self.a.models else None
        if ref.startswith("@"):
            return self.by_qual.get(self.r.resolve(module, ref[1:]) or "")
        return self.keys.get(ref.lower()) if ref else None

    def writes(self, module: str, names: tuple[str, ...], refs: tuple[str, ...],
               sql: tuple[SqlFact, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
        """Tables written by code that writes ``names``, runs ``sql`` and refers to
        ``refs`` in ``module``, following calls and signal receivers; and what it
        followed."""
        models: set[str] = set()
        tables: set[str] = set()
        via: list[str] = []
        seen: set[str] = set()
        fired: set[tuple[str, str]] = set()
        todo: list[tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[SqlFact, ...],
                         int]] = [("", module, names, refs, sql, 0)]
        while todo:
            unit, mod, ws, rs, qs, depth = todo.pop(0)
            wrote = {k for name in ws if (k := self._model(mod, f"@{name}"))}
            new = wrote - models
            models |= new
            raw = self._sql_tables(qs)
            tables |= raw
            if unit and (wrote or raw):
                via.append(unit)  # a function or receiver that writes
            keys = [(s, m) for m in new for s in MODEL_SIGNALS] + [(s, "") for s in
                                                                    MODEL_SIGNALS if new]
            for ref in rs:
                if ref.endswith((".send", ".send_robust")) and self.r.resolve(
                        mod, ref) not in self.units:  # a signal's send, not a function
                    signal = self._signal(mod, ref.rsplit(".", 1)[0])
                    keys.append((signal, ""))
                    keys += [(s, m) for (s, m) in self.receivers if s == signal]
                elif depth < MAX_DEPTH and ref.count(".") <= 1:
                    q = self.r.resolve(mod, ref)
                    if q in self.units and q not in seen:
                        seen.add(q)
                        f, u = self.units[q]
                        if u.kind == "function":  # a class names too much to follow
                            todo.append((q, f.module, u.writes, u.refs, u.sql, depth + 1))
            for key in keys:
                if key in fired:
                    continue
                fired.add(key)
                for q in self.receivers.get(key, ()):
                    if q not in seen:
                        seen.add(q)
                        f, u = self.units[q]
                        todo.append((q, f.module, u.writes, u.refs, u.sql, depth + 1))
        tables |= {self.a.models[m].table for m in models if not self.a.models[m].proxy}
        return frozenset(tables), tuple(via)

    def _sql_tables(self, sql: tuple[SqlFact, ...]) -> set[str]:
        out: set[str] = set()
        for s in sql:
            access = self.a.sql.shapes.get(fingerprint(s.sql)) if s.sql else None
            if access is not None and not access.error:
                out |= access.writes
        return out


def context_transactions(a: Analysis, names: dict[int, str]
                         ) -> dict[int, list[dict[str, Any]]]:
    """Per context, the spanning transactions it takes part in, as report evidence."""
    per: dict[int, list[dict[str, Any]]] = defaultdict(list)
    owner = {t: a.partition[ms[0]] for t, ms in a.table_models.items()
             if ms and ms[0] in a.partition}
    # what ran first (a log's transactions, most often seen first), then what the code may do
    found = sorted(spanning_transactions(a), key=lambda x: (
        x[0].how != "query log", -x[0].count, _place(x[0].where)))
    for tx, contexts in found:
        for c in contexts:
            per[c].append({
                "where": tx.where, "how": tx.how, "unit": tx.unit, "count": tx.count,
                "contexts": sorted(names[x] for x in contexts),
                "with": sorted(names[x] for x in contexts if x != c),
                "tables": sorted(t for t in tx.tables if owner.get(t) is not None),
                "via": list(tx.via[:8]),
            })
    return per


def _place(where: str) -> tuple[str, int]:
    """``file:line`` in file order, then line order (``a.py:9`` before ``a.py:10``)."""
    path, _, line = where.rpartition(":")
    return (path, int(line)) if line.isdigit() else (where, 0)
