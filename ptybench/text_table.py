"""Every command's plain-text table, through tabulate: one formatter, so columns line up the same way everywhere."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tabulate import tabulate


def text_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """Cells are shown as given (format numbers first); None is blank. ``right``: column indices set flush right."""
    rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    align = ["right" if i in right else "left" for i in range(len(headers))]
    return tabulate(rows, headers=list(headers), tablefmt="simple", disable_numparse=True, colalign=align)
