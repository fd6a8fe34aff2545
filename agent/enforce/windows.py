"""Uninstall commands for Windows apps found by the windows collector.

The argument lists are built by pure functions from what the registry recorded, so they can be
tested and shown in a dry run anywhere; only `uninstall` runs one, through the runner. What is
run is always silent and never a shell string:

- an MSI product: `msiexec.exe /x {product code} /qn /norestart`;
- another installer: its QuietUninstallString, split as Windows splits a command line;
  an entry with only an (interactive) UninstallString is refused rather than guessed at;
- a Store/MSIX package: `Remove-AppxPackage -AllUsers` (installed per user) or `Remove-AppxProvisionedPackage`
  (provisioned for new users), through Windows PowerShell 5.1, where the Appx module lives.
"""

from __future__ import annotations

import re

from agent.model import App
from agent.runner import Result, Runner

UNINSTALL_TIMEOUT = 600.0
"""Seconds an uninstaller may run; some (MSI with custom actions) take minutes."""

_PACKAGE_FULL_NAME = re.compile(r"^[A-Za-z0-9.\-]+_[A-Za-z0-9.]+_[A-Za-z0-9]*_[A-Za-z0-9.~\-]*_[a-z0-9]{13}$")
_PRODUCT_CODE = re.compile(r"^\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}$", re.I)


class UninstallRefused(ValueError):
    """The app has no silent, safe way to be removed; the message says why."""


def split_command_line(line: str) -> list[str]:
    """Return the arguments of a Windows command line, as CommandLineToArgvW splits it.

    Why not shlex: backslashes are path separators on Windows and only escape quotes. The
    program name also follows Windows' rule: an unquoted path with spaces is taken up to the
    first `.exe` (how CreateProcess finds `C:\\Program Files\\App\\uninst.exe /S`).
    """
    line = line.strip()
    if not line:
        return []
    if line.startswith('"'):
        end = line.find('"', 1)
        program, rest = (line[1:], "") if end < 0 else (line[1:end], line[end + 1:])
    else:
        found = re.match(r"(.+?\.exe)(?=\s|$)", line, re.I)
        program, rest = (found.group(1), line[found.end():]) if found else (line.split()[0], line[len(line.split()[0]):])
    return [program, *_split_arguments(rest)]


def _split_arguments(text: str) -> list[str]:
    args: list[str] = []
    current: list[str] = []
    in_quotes = False
    has_arg = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            run = len(text[i:]) - len(text[i:].lstrip("\\"))
            if i + run < len(text) and text[i + run] == '"':
                current.append("\\" * (run // 2))
                if run % 2:
                    current.append('"')
                    i += run + 1
                else:
                    i += run
                has_arg = True
                continue
            current.append("\\" * run)
            i += run
            has_arg = True
            continue
        if char == '"':
            in_quotes = not in_quotes
            has_arg = True
        elif char.isspace() and not in_quotes:
            if has_arg:
                args.append("".join(current))
                current, has_arg = [], False
        else:
            current.append(char)
            has_arg = True
        i += 1
    if has_arg:
        args.append("".join(current))
    return args


def msiexec_argv(product_code: str) -> list[str]:
    """Return the silent MSI uninstall of a product code. Raise UninstallRefused if it is not one."""
    if not _PRODUCT_CODE.match(product_code):
        raise UninstallRefused(f"{product_code!r} is not an MSI product code")
    return ["msiexec.exe", "/x", product_code.upper(), "/qn", "/norestart"]


def remove_appx_argv(package_full_name: str, provisioned: bool = False) -> list[str]:
    """Return the PowerShell command removing one package for every user who has it (the agent
    runs as an administrator or SYSTEM, whose own Remove-AppxPackage would not touch another
    user's copy), or (provisioned) from the image so new users no longer get it. Raise UninstallRefused on a malformed package name
    (the name is placed inside a PowerShell command, so only package-name characters pass)."""
    if not _PACKAGE_FULL_NAME.match(package_full_name):
        raise UninstallRefused(f"{package_full_name!r} is not a package full name")
    command = (f"Remove-AppxProvisionedPackage -Online -PackageName '{package_full_name}'" if provisioned
               else f"Remove-AppxPackage -Package '{package_full_name}' -AllUsers")
    return ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command", command]


def uninstall_argv(app: App) -> list[str]:
    """Given a windows-collector App, return the argument list that removes it silently.

    Raise UninstallRefused when the app is not a Windows app or has no silent uninstaller.
    """
    if app.source != "windows":
        raise UninstallRefused(f"{app.id}: not a Windows app (source {app.source})")
    kind = app.extra_value("kind")
    if kind == "msix":
        return remove_appx_argv(app.extra_value("package_full_name"), app.extra_value("scope") == "provisioned")
    if app.extra_value("msi_product_code"):
        return msiexec_argv(app.extra_value("msi_product_code"))
    quiet = split_command_line(app.extra_value("quiet_uninstall"))
    if quiet:
        return quiet
    raise UninstallRefused(f"{app.id}: no QuietUninstallString or MSI product code (its uninstaller is interactive)")


def uninstall(app: App, runner: Runner, timeout: float = UNINSTALL_TIMEOUT) -> Result:
    """Run the silent uninstall of `app` through the runner and return its Result.

    Raise UninstallRefused (nothing run) or CommandError (it ran and failed).
    """
    argv = uninstall_argv(app)
    return runner.run(argv[0], argv[1:], timeout=timeout)
