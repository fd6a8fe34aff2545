"""Running processes (psutil): a banned app that is running is found even when no package
database knows it, e.g. a binary copied into a home folder."""

from __future__ import annotations

import os

import psutil

from agent.inventory.base import Collected, Context
from agent.model import App


def process_app(info: dict) -> App | None:
    """Given psutil's info dict for one process, return its App, or None for kernel threads."""
    exe = info.get("exe") or ""
    name = info.get("name") or ""
    if not exe and not name:
        return None
    if not exe and info.get("ppid") in (0, 2):  # kernel threads have no executable
        return None
    return App(
        source="process", id=name or os.path.basename(exe), name=name or os.path.basename(exe),
        path=exe, user=info.get("username") or "",
        extra=(("pid", str(info["pid"])), ("ppid", str(info.get("ppid") or 0))),
    )


class ProcessCollector:
    """Running processes of the live system (skipped when reading a mounted image)."""

    name = "process"
    live_only = True

    def unavailable(self, ctx: Context) -> str | None:
        return None

    def collect(self, ctx: Context) -> Collected:
        apps = []
        for proc in psutil.process_iter(["pid", "ppid", "name", "exe", "username"]):
            app = process_app(proc.info)
            if app is not None:
                apps.append(app)
        return Collected(apps=apps)
