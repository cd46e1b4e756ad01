"""Options shared by the subcommands, declared once."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])

CONFIG_ENV = "STRANGLER_CONFIG"


def config_option(function: F) -> F:
    """``--config FILE``: the routes file; ``$STRANGLER_CONFIG``, else ./strangler.toml."""
    return click.option(
        "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
        envvar=CONFIG_ENV, show_envvar=True, default=Path("strangler.toml"),
        show_default=True, help="The routes file.",
    )(function)


def output_console() -> Console:
    """A rich console for tables; piped or redirected output is never wrapped at 80 columns.

    Rich sizes a console that is not a terminal to 80 columns (or $COLUMNS), which folds
    table cells and long lines for ``grep`` and ``awk``; a pipe has no width, so none is set.
    """
    if sys.stdout.isatty():
        return Console()
    return Console(width=_PIPE_WIDTH, soft_wrap=True, no_color=True)


_PIPE_WIDTH = 100_000

__all__ = ["CONFIG_ENV", "config_option", "output_console"]
