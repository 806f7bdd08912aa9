"""Column alignment the way kubectl prints it.

kubectl writes its tables and ``describe`` pages through Go's
``text/tabwriter`` (elastic tabstops): cells end with a tab, a column's
width is its widest cell plus padding, and a column block ends at the first
line that has no cell in that column. Reproducing that algorithm, rather
than padding naively, gives the same spacing as kubectl, including the
blocks of ``describe`` output that are aligned independently.
"""
from __future__ import annotations

# pkg/printers/tabwriter.go: GetNewTabWriter(output) for `get` tables.
TABLE_MINWIDTH = 6
TABLE_PADDING = 3
# pkg/describe: NewPrefixWriter wraps tabwriter.NewWriter(out, 0, 8, 2, ' ', 0).
DESCRIBE_MINWIDTH = 0
DESCRIBE_PADDING = 2


def align(text: str, *, minwidth: int = TABLE_MINWIDTH, padding: int = TABLE_PADDING) -> str:
    """Align tab-separated ``text`` (lines ending in ``\\n``) as Go's tabwriter
    with pad character ' ' and no flags would.

    The text after a line's last tab is a trailing cell and takes no part in
    column widths. Returns the aligned text; widths are character counts.
    """
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[str] = []
    _format(lines, 0, len(lines), [], minwidth, padding, out)
    return "\n".join(out)


def _format(lines: list[list[str]], line0: int, line1: int, widths: list[int],
            minwidth: int, padding: int, out: list[str]) -> None:
    # A transcription of the recursion in Go's tabwriter.Writer.format.
    column = len(widths)
    this = line0
    while this < line1:
        if column >= len(lines[this]) - 1:
            this += 1
            continue
        _write_lines(lines, line0, this, widths, out)
        line0 = this
        width = minwidth
        while this < line1 and column < len(lines[this]) - 1:
            width = max(width, len(lines[this][column]) + padding)
            this += 1
        widths.append(width)
        _format(lines, line0, this, widths, minwidth, padding, out)
        widths.pop()
        line0 = this
    _write_lines(lines, line0, line1, widths, out)


def _write_lines(lines: list[list[str]], line0: int, line1: int, widths: list[int],
                 out: list[str]) -> None:
    for cells in lines[line0:line1]:
        parts = []
        for j, cell in enumerate(cells):
            parts.append(cell.ljust(widths[j]) if j < len(widths) else cell)
        out.append("".join(parts))


def render_table(header: list[str] | None, rows: list[list[str]]) -> str:
    """A kubectl ``get`` table: header (if any) and rows, columns aligned,
    ending in a newline (empty string when there is nothing to print)."""
    all_rows = ([header] if header else []) + rows
    if not all_rows:
        return ""
    return align("".join("\t".join(r) + "\n" for r in all_rows))


class TableWriter:
    """Rows printed over time (``get --watch``) with widths that only grow,
    like kubectl's tabwriter with remembered widths between flushes."""

    def __init__(self) -> None:
        self.widths: list[int] = []

    def render(self, rows: list[list[str]]) -> str:
        """Aligned text for ``rows`` (each a list of cells), newline-terminated."""
        for row in rows:
            for i, cell in enumerate(row[:-1]):
                w = max(len(cell) + TABLE_PADDING, TABLE_MINWIDTH)
                if i < len(self.widths):
                    self.widths[i] = max(self.widths[i], w)
                else:
                    self.widths.append(w)
        text = ""
        for row in rows:
            text += "".join(c.ljust(self.widths[i]) for i, c in enumerate(row[:-1]))
            text += (row[-1] if row else "") + "\n"
        return text
