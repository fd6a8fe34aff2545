"""What no list may ever remove or deny: the base system, the shells, the login and ssh path, and
the agent's own interpreter and libraries.

Why a table of names as well as the dpkg `Essential`/`Priority: required` marks: rpm, pacman and
apk have no such marks, and on Debian the login path (sshd, sudo, PAM, util-linux's agetty) is
neither essential nor required — a list with `names: ["*"]` must still leave an administrator a
way in. Names are matched exactly (package ids) or as globs on a file's base name (programs and
PAM modules), so a copy of sshd in /opt is kept too — but not one in a home or /tmp
(USER_WRITABLE), where a banned app renamed `bash` would otherwise escape.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import site
import sys
import sysconfig
from pathlib import PurePosixPath
from typing import Iterable

from agent.model import App

BASE_PACKAGES = frozenset({
    # shells and the core tools every script needs
    "bash", "dash", "zsh", "busybox", "coreutils", "util-linux", "findutils", "grep", "sed", "tar",
    # C library and loader
    "libc6", "libc-bin", "glibc", "glibc-common", "musl", "libgcc-s1", "libgcc",
    # init and the service manager
    "systemd", "systemd-sysv", "systemd-libs", "init", "init-system-helpers", "sysvinit-core", "openrc",
    # login, accounts, PAM
    "login", "passwd", "shadow", "shadow-utils", "util-linux-login", "sudo", "sudo-rs", "doas",
    "pam", "linux-pam", "libpam0g", "libpam-modules", "libpam-modules-bin", "libpam-runtime", "libpam-systemd",
    # remote access
    "openssh", "openssh-server", "openssh-client", "openssh-clients", "openssh-sftp-server", "openssh-server-pam",
    # the package managers themselves (the only way back from a mistake)
    "dpkg", "apt", "rpm", "dnf", "yum", "pacman", "apk-tools", "base-files", "filesystem", "setup", "alpine-base",
})
"""Package ids (any package manager) never uninstalled and whose files are never denied."""

NEVER_DENIED_PROGRAMS = (
    "sh", "bash", "dash", "rbash", "zsh", "ksh", "mksh", "fish", "ash", "busybox",
    "init", "systemd", "systemd-*", "agetty", "getty", "mingetty", "login", "su", "sudo", "sudoedit",
    "doas", "runuser", "pkexec", "unix_chkpwd", "sshd", "sshd-session", "sshd-auth", "ssh", "sftp-server",
    "dbus-daemon", "dbus-broker*", "polkitd", "ld-linux*.so*", "ld-musl*.so*", "pam_*.so",
)
"""Base-name globs of programs on the shell, boot and login path: never denied nor killed,
wherever they lie outside USER_WRITABLE."""

USER_WRITABLE = ("/home", "/root", "/tmp", "/var/tmp", "/dev/shm", "/run/user")
"""Where users put files of their own: a program there is never the system's login path, so a
banned app renamed to `bash` in a home is still stopped."""

SHELLS_FILE = "/etc/shells"
MIN_TREE_DEPTH = 4
"""Parts of the shallowest folder kept whole (`/usr/lib/python3` has four: `/`, usr, lib, python3)."""


def base_package(app: App) -> bool:
    """Return True when the app's package id is one of the base system or the login path
    (BASE_PACKAGES); the id, not the display name, which a launcher may have given it."""
    return app.id in BASE_PACKAGES


_NEVER_DENIED = re.compile("|".join(fnmatch.translate(pattern) for pattern in NEVER_DENIED_PROGRAMS))


def never_denied_program(path: str) -> bool:
    """Return True when a file's base name is a shell, init or login-path program
    (NEVER_DENIED_PROGRAMS) and it does not lie where users keep their own files (USER_WRITABLE);
    a bare name (an `executables` rule) is judged by the name alone.

    Called for every exec the guard has no cached verdict for, so it stays a few microseconds:
    one compiled pattern, and whole-component containment on the normalised path."""
    if path.startswith("/"):
        path = posixpath.normpath("/" + path.lstrip("/"))
        if any(path == folder or path.startswith(folder + "/") for folder in USER_WRITABLE):
            return False
    return _NEVER_DENIED.match(path.rsplit("/", 1)[-1].casefold()) is not None


def shells(root: str) -> set[str]:
    """Return the login shells listed in the system's /etc/shells (under `root`), as given and
    resolved, plus /bin/sh; a missing file gives /bin/sh alone."""
    listed = {"/bin/sh", "/usr/bin/sh"}
    try:
        with open(os.path.join(root, SHELLS_FILE.lstrip("/")), encoding="utf-8", errors="replace") as handle:
            listed.update(line.strip() for line in handle if line.startswith("/"))
    except OSError:
        pass
    return with_real(os.path.join(root, p.lstrip("/")) for p in listed)


def agent_files(maps: str = "/proc/self/maps") -> set[str]:
    """Return the agent's interpreter and every file mapped into this process (libpython, libc,
    the dynamic loader, extension modules), as given and resolved."""
    files = {sys.executable}
    try:
        with open(maps, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    files.add(parts[5].rstrip("\n").removesuffix(" (deleted)"))
    except OSError:
        pass
    return with_real(files)


def agent_trees() -> tuple[str, ...]:
    """Return the folders the agent's Python and its libraries live in (prefixes, the standard
    library, site-packages, the agent's own package): nothing under them is ever denied.

    A folder less than three levels deep is left out: the system Python's prefix is `/usr`, and
    keeping all of /usr would keep every program (the interpreter and its mapped files are kept
    one by one by `agent_files`)."""
    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
               os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    folders.update(sysconfig.get_paths().get(key, "") for key in ("stdlib", "platstdlib", "purelib", "platlib"))
    folders.update(site.getsitepackages() if hasattr(site, "getsitepackages") else ())
    return tuple(sorted(p for p in with_real(f for f in folders if f) if len(PurePosixPath(p).parts) >= MIN_TREE_DEPTH))


def with_real(paths: Iterable[str]) -> set[str]:
    """Return each path as given and after symlinks are resolved (an exec is seen resolved)."""
    out: set[str] = set()
    for path in paths:
        out.update({path, os.path.realpath(path)})
    return out
