"""agent.terminal measures the width as shutil.get_terminal_size does (without importing shutil):
the two agree with COLUMNS set, unset and malformed, on a pipe and on a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

PROBE = "import shutil; from agent import terminal; print(terminal.columns(), shutil.get_terminal_size().columns)"


def _widths(env_columns: str | None, tty_columns: int | None) -> tuple[str, str]:
    """Return (ours, shutil's) width printed by a child whose stdout is a pipe, or a pty of
    `tty_columns` columns (the answer then comes back through the pty)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if env_columns is not None:
        env["COLUMNS"] = env_columns
    if tty_columns is None:
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
        return tuple(done.stdout.split())
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, tty_columns, 0, 0))
    try:
        subprocess.run([sys.executable, "-c", PROBE], stdout=follower, env=env, check=True)
        return tuple(os.read(leader, 200).decode().split())
    finally:
        os.close(leader)
        os.close(follower)


@pytest.mark.parametrize(("env_columns", "tty_columns"), [
    (None, None), ("132", None), ("0", None), ("wide", None), (None, 97), ("132", 97), ("-3", 97),
])
def test_the_width_is_the_one_shutil_gives(env_columns: str | None, tty_columns: int | None) -> None:
    ours, theirs = _widths(env_columns, tty_columns)
    assert ours == theirs
    if tty_columns and env_columns in (None, "-3"):
        assert ours == str(tty_columns)
