"""The terminal's width, as shutil.get_terminal_size measures it, without importing shutil.

Why: shutil loads zlib, bz2 and lzma (~2 ms of every `appban check`, which never copies a
file), and both the table renderer and argparse (which makes a help formatter for every argument
added) only want the width: COLUMNS when it is a positive number, else the terminal on
sys.__stdout__, else the fallback.
"""

from __future__ import annotations

import os
import sys


def columns(fallback: int = 80) -> int:
    """Return the terminal's columns: COLUMNS, else the terminal's, else `fallback`."""
    try:
        width = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        width = 0
    if width > 0:
        return width
    try:
        width = os.get_terminal_size(sys.__stdout__.fileno()).columns
    except (AttributeError, ValueError, OSError):  # no stdout, closed or detached, or not a terminal
        width = 0
    return width or fallback
