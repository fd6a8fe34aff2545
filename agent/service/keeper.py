"""The service's exec guard over its lifetime: started at the first blocking scan, updated after
every scan, restarted when a reload changes its settings, stopped when blocking is turned off or
the service stops — and the fapolicyd rules withdrawn when blocking is turned off.

Kept apart from the daemon so the daemon holds only scheduling, signals and the endpoint, and the
guard's lifecycle can be read (and tested) in one place.

The guard's machinery (agent.enforce.guard: fanotify, fapolicyd, the guard process, psutil) is
imported when a guard is kept, not with the service: a machine that only reports never loads it
(issue 14: the idle service's memory).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Callable

from agent.config import Config
from agent.enforce.files import on_root
from agent.log import log_event
from agent.model import BanList
from agent.runner import CommandError, Runner

if TYPE_CHECKING:
    from agent.enforce.deny import DenySet
    from agent.enforce.execguard import Denial
    from agent.enforce.guard import Guard

logger = logging.getLogger(__name__)


def guard_errors() -> tuple[type[Exception], ...]:
    """What starting, updating or withdrawing a guard raises when it fails (logged, never fatal)."""
    from agent.enforce.execguard import GuardUnavailable
    from agent.enforce.fapolicyd import RulesError

    return (GuardUnavailable, RulesError, CommandError, OSError)


class GuardKeeper:
    """Holds the running guard (or none) and the settings it was made from."""

    def __init__(self) -> None:
        self.guard: Guard | None = None
        self._settings: tuple[object, ...] = ()
        self._deny_reporter: Callable[[Denial], None] = lambda denial: None

    def keep(self, config: Config, banlist: BanList, deny: DenySet, runner: Runner) -> None:
        """Update the running guard, or (re)start the one config asks for when none runs, the
        guard settings changed on reload, or the running one failed to take the update. A guard
        that cannot start is logged and the scan's report is still kept; the next scan tries again."""
        from agent.enforce.guard import denial_reporter, guard_settings, make_guard

        errors = guard_errors()
        self._deny_reporter = denial_reporter(config, banlist, runner)
        settings = guard_settings(config)
        if self.guard is not None and settings != self._settings:
            self.stop()
        if self.guard is not None:
            try:
                self.guard.update(deny)
                return
            except errors as exc:
                log_event(logger, logging.ERROR, "guard.failed", error=f"{type(exc).__name__}: {exc}")
                self.stop()
        guard = make_guard(config, deny, runner, on_deny=lambda denial: self._deny_reporter(denial))
        if guard is None:
            return
        try:
            guard.start()
        except errors as exc:
            log_event(logger, logging.ERROR, "guard.failed", guard=type(guard).__name__,
                      error=f"{type(exc).__name__}: {exc}")
            guard.stop()
            return
        self.guard, self._settings = guard, settings
        log_event(logger, logging.INFO, "guard.started", guard=type(guard).__name__)

    def off(self, config: Config) -> None:
        """Blocking is off: stop the guard and take back fapolicyd deny rules written while it was
        on (they outlive the guard). Without a rules file there is nothing to take back (as
        withdraw_fapolicyd_rules would find), so not even the fapolicyd module is loaded to say so."""
        self.stop()
        if not os.path.lexists(on_root(config.enforcement.root, config.enforcement.fapolicyd_rules)):
            return
        from agent.enforce.fapolicyd import RulesError, withdraw_fapolicyd_rules

        try:
            if withdraw_fapolicyd_rules(config.enforcement, Runner(commands=config.commands)):
                log_event(logger, logging.INFO, "fapolicyd.rules_withdrawn")
        except (RulesError, CommandError, OSError) as exc:
            log_event(logger, logging.ERROR, "fapolicyd.withdraw_failed", error=f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        if self.guard is not None:
            guard, self.guard = self.guard, None
            guard.stop()
            log_event(logger, logging.INFO, "guard.stopped")
