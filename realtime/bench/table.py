"""The Markdown table every benchmark prints: `markdown_table(header, rows)`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; each cell is printed with str()."""
    lines = [markdown_row(header), "|" + "---|" * len(header)]
    lines += [markdown_row(row) for row in rows]
    return "\n".join(lines)
