"""Boundary analysis: propose bounded contexts for a Django project, statically.

Public names: :func:`analyze` runs the pipeline (``analysis.pipeline.PASSES``) for
:class:`Options`; :class:`Weights` tunes the graph; :class:`AnalysisError` is the base of
every user-facing error. The CLI is ``strangler analyze`` (``analysis.cli``).
"""

from __future__ import annotations

from analysis.errors import AnalysisError
from analysis.pipeline import PASSES, analyze
from analysis.state import Analysis, Options, Weights

__all__ = ["PASSES", "Analysis", "AnalysisError", "Options", "Weights", "analyze"]
