"""Text measured as a terminal shows it: a CJK character takes two columns, a combining mark none.

The table's cells are padded and cut by these widths (len() counts code points, so a column of
Chinese app names — 微信, 腾讯QQ — pushed every column after it out of line). The terminal width
comes from COLUMNS or the terminal, else 80, as shutil.get_terminal_size decides (agent.terminal), so a pipe
into a script always gets the same 80 columns.
"""

from __future__ import annotations

import unicodedata

from agent import terminal

MIN_WIDTH, DEFAULT_WIDTH = 60, 80


def char_width(char: str) -> int:
    """Return the columns one character takes: 2 for East Asian wide and fullwidth, 0 for
    combining marks and format characters (zero-width joiner, …), else 1."""
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def width(text: str) -> int:
    """Return the columns `text` takes on a terminal."""
    return sum(char_width(char) for char in text)


def fit(text: str, columns: int) -> str:
    """Return `text` cut to at most `columns` columns (ending in "…" when cut), padded to exactly
    `columns` with spaces (a table cell)."""
    if width(text) > columns:
        kept, used = [], 0
        for char in text:
            if used + char_width(char) > columns - 1:
                break
            kept.append(char)
            used += char_width(char)
        text = "".join(kept) + "…"
    return text + " " * (columns - width(text))


def _pieces(word: str, columns: int) -> list[str]:
    """Split a word wider than `columns` into pieces that fit (as textwrap breaks long words)."""
    pieces, piece = [], ""
    for char in word:
        if piece and width(piece + char) > columns:
            pieces.append(piece)
            piece = ""
        piece += char
    return [*pieces, piece] if piece else pieces


def wrap(text: str, columns: int, indent: str = "", subsequent: str = "") -> list[str]:
    """Wrap `text` at spaces into lines of at most `columns` columns, breaking a word longer than
    a line, the first line starting with `indent`, the others with `subsequent`."""
    lines: list[str] = []
    line, fresh = indent, True  # fresh: the line holds only its prefix so far
    room = max(1, columns - max(width(indent), width(subsequent)))
    for word in (piece for word in text.split() for piece in _pieces(word, room)):
        candidate = line + word if fresh else f"{line} {word}"
        if not fresh and width(candidate) > columns:
            lines.append(line)
            candidate = subsequent + word
        line, fresh = candidate, False
    if not fresh:
        lines.append(line)
    return lines


def terminal_width() -> int:
    """Return the width to render for: COLUMNS, else the terminal's, else 80; never below 60."""
    return max(MIN_WIDTH, terminal.columns(DEFAULT_WIDTH))
