"""Shared CLI objects: the typer app, rich consoles, JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    """Write ``obj`` as JSON to stdout (plain, no colour, so it can be piped)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def parse_input_size(text: str) -> tuple[int, int, int]:
    """``"3x224x224"`` -> (3, 224, 224); also accepts ``"224"`` (3 channels, square) and ``"HxW"``."""
    from ..errors import PoolstrideError

    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = [3, parts[0], parts[0]]
    elif len(parts) == 2:
        parts = [3, *parts]
    if len(parts) != 3 or min(parts) < 1:
        raise PoolstrideError(f"bad --input {text!r}; expected CxHxW such as 3x224x224 (or HxW, or a single size)")
    return parts[0], parts[1], parts[2]


__all__ = ["app", "console", "err_console", "parse_input_size", "print_json", "typer"]
