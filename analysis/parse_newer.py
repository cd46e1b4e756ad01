"""Read a file written in Python syntax newer than the interpreter running the tool.

CPython's :mod:`ast` reads only its own version's grammar: under 3.11, a ``models.py``
with a ``class Box[T](models.Model)`` (3.12), an f-string reusing its quotes (3.12),
``except A, B:`` (3.14) or a t-string (3.14) is a syntax error, and its models would be
lost. libcst reads Python 3.0 to 3.15. This module parses such a file with libcst,
rewrites the few constructs the running :mod:`ast` cannot read into older equivalents that
carry the same facts (same names, same lines), prints it back and hands it to
:func:`ast.parse`, so :mod:`analysis.python_facts` extracts facts exactly as for any file.

The rewrites (each keeps the line count, so line numbers stay true):

* type parameters (``class A[T]``, ``def f[T]``) are dropped;
* ``type X = ...`` becomes ``X = ...``;
* ``except A, B:`` gets its parentheses;
* f-strings and t-strings become the placeholder string ``"__dyn__"`` (the known wart: raw
  SQL built in an f-string is lost in these files only, as a dynamic SQL fragment is
  everywhere).
"""

from __future__ import annotations

import ast

import libcst as cst

PLACEHOLDER = '"__dyn__"'


class _Older(cst.CSTTransformer):
    """Rewrites newer syntax into what Python 3.11's parser reads."""

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        return updated.with_changes(type_parameters=None) if updated.type_parameters else \
            updated

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef
                          ) -> cst.FunctionDef:
        return updated.with_changes(type_parameters=None) if updated.type_parameters else \
            updated

    def leave_TypeAlias(self, original: cst.TypeAlias, updated: cst.TypeAlias) -> cst.Assign:
        return cst.Assign(targets=[cst.AssignTarget(updated.name)], value=updated.value)

    def leave_ExceptHandler(self, original: cst.ExceptHandler, updated: cst.ExceptHandler
                            ) -> cst.ExceptHandler:
        kind = updated.type
        if isinstance(kind, cst.Tuple) and not kind.lpar:
            return updated.with_changes(type=kind.with_changes(
                lpar=[cst.LeftParen()], rpar=[cst.RightParen()]))
        return updated

    def leave_FormattedString(self, original: cst.FormattedString,
                              updated: cst.FormattedString) -> cst.BaseExpression:
        return _placeholder(original)

    def leave_TemplatedString(self, original: cst.TemplatedString,
                              updated: cst.TemplatedString) -> cst.BaseExpression:
        return _placeholder(original)


def _placeholder(node: cst.CSTNode) -> cst.BaseExpression:
    """``"__dyn__"``, followed by as many line breaks (in parentheses) as ``node`` spans."""
    lines = cst.Module(body=[]).code_for_node(node).count("\n")
    if not lines:
        return cst.SimpleString(PLACEHOLDER)
    return cst.SimpleString(PLACEHOLDER, lpar=[cst.LeftParen()], rpar=[cst.RightParen(
        whitespace_before=cst.ParenthesizedWhitespace(
            empty_lines=[cst.EmptyLine()] * (lines - 1)))])


def parse_newer(source: str | bytes) -> ast.Module:
    """The :mod:`ast` tree of a file in any Python syntax from 3.0 to 3.15.

    Raises :class:`SyntaxError` when libcst cannot read it either.

    >>> tree = parse_newer("class Box[T](Model):\\n    pass\\ntype Ids = list[int]\\n")
    >>> [type(n).__name__ for n in tree.body], tree.body[0].name, tree.body[1].lineno
    (['ClassDef', 'Assign'], 'Box', 3)
    """
    text = source.decode("utf-8") if isinstance(source, bytes) else source
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as exc:
        raise SyntaxError(f"not Python in any version libcst reads: {exc.message} "
                          f"(line {exc.raw_line})") from exc
    return ast.parse(module.visit(_Older()).code)
