"""Pieces every command shares: the ``--json`` option and how results are printed."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout (for scripts).")
]


def print_json(data: Any) -> None:
    """Print ``data`` as sorted, indented JSON: stable output scripts can diff."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def print_line(text: str) -> None:
    """Print a data result line on stdout (logs go to stderr)."""
    sys.stdout.write(text + "\n")
