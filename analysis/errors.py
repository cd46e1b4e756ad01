"""Errors of the analysis, each printed by the ``strangler`` CLI as one line.

::

    AnalysisError                 base; ``strangler_user_error = True``
    ├── NotADjangoProject         the path holds no Django models, settings or manage.py
    ├── UnreadableLog             a query log cannot be opened or its format not recognised
    ├── UnknownDialect            ``--dialect`` names no sqlglot dialect
    └── BadOption                 an option value out of range (``--contexts 0``, ``--format pdf``)
"""

from __future__ import annotations


class AnalysisError(Exception):
    """Base of every error the analysis reports to a user."""

    strangler_user_error = True


class NotADjangoProject(AnalysisError):
    """The analysed path is not a Django project."""


class UnreadableLog(AnalysisError):
    """A query log could not be read."""


class UnknownDialect(AnalysisError):
    """A SQL dialect that sqlglot does not know."""


class BadOption(AnalysisError):
    """An option value that cannot be used."""
