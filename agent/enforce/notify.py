"""Telling the person at the screen: a desktop notification naming the app, the rule, the
directive and whom to contact, in every graphical session found (best effort: a machine with no
desktop, or a notification that fails, changes nothing about the enforcement itself)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from agent import platform as host
from agent.log import log_event
from agent.model import Entry
from agent.runner import CommandError, Runner

logger = logging.getLogger(__name__)

NOTIFY_TIMEOUT = 10.0
SESSION_VARS = ("DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR")


@dataclass(frozen=True)
class Session:
    """A graphical session: its user and the environment notify-send needs to reach it."""

    uid: int
    env: tuple[tuple[str, str], ...]


def session_env(environ: bytes) -> dict[str, str] | None:
    """Given a process's /proc environ, return the session variables when it belongs to a
    graphical session (a D-Bus session bus and a display), else None."""
    found = {}
    for item in environ.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key.decode("ascii", "replace") in SESSION_VARS:
            found[key.decode()] = value.decode("utf-8", "replace")
    if "DBUS_SESSION_BUS_ADDRESS" in found and ("DISPLAY" in found or "WAYLAND_DISPLAY" in found):
        return found
    return None


def desktop_sessions(proc: str = "/proc") -> list[Session]:
    """Return one Session per user and session bus found among running processes (none where
    there is no /proc: macOS and Windows have no notify-send sessions to find this way)."""
    sessions: dict[tuple[int, str], Session] = {}
    for name in os.listdir(proc) if os.path.isdir(proc) else ():
        if not name.isdigit():
            continue
        try:
            uid = os.stat(f"{proc}/{name}").st_uid
            with open(f"{proc}/{name}/environ", "rb") as handle:
                env = session_env(handle.read())
        except OSError:
            continue
        if env is not None:
            sessions.setdefault((uid, env["DBUS_SESSION_BUS_ADDRESS"]), Session(uid, tuple(sorted(env.items()))))
    return list(sessions.values())


def message(entry: Entry, app: str, what: str, contact: str) -> tuple[str, str]:
    """Return (title, body) telling the user which app was blocked, by which rule and directive,
    and whom to ask."""
    body = [f"{app} {what} by rule {entry.id}: {entry.reason or entry.name}."]
    if entry.references:
        body.append(f"Directive: {entry.references[0]}")
    if contact:
        body.append(f"Questions: {contact}")
    return f"{entry.name} is not allowed on this device", "\n".join(body)


def notify(runner: Runner, sessions: list[Session], title: str, body: str) -> int:
    """Show the notification in every session; return how many accepted it."""
    shown = 0
    for session in sessions:
        args = ["--app-name=appban", "--urgency=critical", title, body]
        program = "notify-send"
        if session.uid != host.current_uid():
            user = host.user_name(session.uid)
            if user is None:
                continue
            program, args = "runuser", ["-u", user, "--", "notify-send", *args]
        try:
            Runner(runner.commands, dict(session.env)).run(program, args, timeout=NOTIFY_TIMEOUT)
            shown += 1
        except CommandError as exc:
            log_event(logger, logging.INFO, "notify.failed", uid=session.uid, error=str(exc))
    return shown
