"""Installed RPM packages (Fedora, RHEL, SUSE…), through the `rpm` command with a query format.

The rpm database is a Berkeley DB, NDB or SQLite file depending on the distribution and release,
so the only stable interface is `rpm -qa --queryformat` itself; `--root` and an explicit
`--dbpath` make it read a mounted image (and never the calling user's ~/.rpmdb, which Debian's
rpm uses by default). The database lives in /usr/lib/sysimage/rpm on newer Fedora and openSUSE,
in /var/lib/rpm elsewhere; the first that holds a database file wins (agent.inventory.preconditions
finds it: a full check asks before this module is imported).

File lists are read on demand, per package (`rpm_package_files`), never for the whole inventory.
"""

from __future__ import annotations

from agent.inventory.base import Collected, Context
from agent.inventory.preconditions import rpm_database, rpm_dbpath
from agent.model import App
from agent.runner import Runner

QUERY_TIMEOUT = 120.0
_TAGS = ("NAME", "EPOCH", "VERSION", "RELEASE", "ARCH", "VENDOR", "PACKAGER")
QUERY_FORMAT = "\\t".join(f"%{{{tag}}}" for tag in _TAGS) + "\\n"
_NONE = "(none)"


def parse_query(text: str) -> list[App]:
    """Given `rpm -qa --queryformat QUERY_FORMAT` output, return one App per package.

    The `gpg-pubkey` pseudo-packages (imported signing keys) are not apps and are left out.
    """
    apps = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != len(_TAGS) or fields[0] == "gpg-pubkey":
            continue
        name, epoch, version, release, arch, vendor, packager = (
            "" if value == _NONE else value for value in fields
        )
        full = f"{epoch + ':' if epoch else ''}{version}{'-' + release if release else ''}"
        extra = {"epoch": epoch, "release": release, "arch": arch, "packager": packager}
        apps.append(App(
            source="rpm", id=name, name=name, version=full, publisher=vendor or packager,
            aliases=(f"{name}.{arch}",) if arch and arch != "noarch" else (),
            extra=tuple(sorted((k, v) for k, v in extra.items() if v)),
        ))
    return apps


def _base_args(root: str, dbpath: str) -> list[str]:
    return ["--root", root, "--dbpath", dbpath]


def rpm_package_files(runner: Runner, root: str, dbpath: str, name: str) -> list[str]:
    """Return the paths package `name` installed, as `rpm -ql` lists them (empty when it has none).

    Raise CommandError if rpm fails (unknown package, unreadable database).
    """
    result = runner.run("rpm", [*_base_args(root, dbpath), "-ql", "--", name], timeout=QUERY_TIMEOUT)
    return [line for line in result.stdout.splitlines() if line.startswith("/")]


def installed_files(ctx: Context, names: list[str]) -> list[str]:
    """Return the paths any of the packages `names` installed, with one `rpm -ql` for all of
    them (names that are not installed are skipped). Raise CommandError if rpm cannot run."""
    dbpath = rpm_dbpath(ctx)
    if dbpath is None or not names:
        return []
    result = ctx.runner.run("rpm", [*_base_args(str(ctx.root), dbpath), "-ql", "--", *names],
                            timeout=QUERY_TIMEOUT, check=False)
    return [line for line in result.stdout.splitlines() if line.startswith("/")]


def app_files(ctx: Context, app: App) -> list[str]:
    """Given an rpm App, return the paths its package installed. Raise CommandError as above."""
    dbpath = rpm_dbpath(ctx)
    return [] if dbpath is None else rpm_package_files(ctx.runner, str(ctx.root), dbpath, app.id)


def path_owners(ctx: Context, paths: list[str]) -> dict[str, str]:
    """Given absolute paths on the device, return {path: package} for those a package installed
    (one `rpm -qf` for all of them). Raise CommandError if rpm cannot run."""
    dbpath = rpm_dbpath(ctx)
    if dbpath is None or not paths:
        return {}
    result = ctx.runner.run(
        "rpm", [*_base_args(str(ctx.root), dbpath), "-qf", "--queryformat", "%{NAME}\\n", "--", *paths],
        timeout=QUERY_TIMEOUT, check=False,
    )
    lines = result.stdout.splitlines()
    if len(lines) != len(paths):
        return {}
    return {path: name for path, name in zip(paths, lines) if " " not in name}


class RpmCollector:
    """RPM packages from the database under the context's root."""

    name = "rpm"
    live_only = False

    def unavailable(self, ctx: Context) -> str | None:
        return rpm_database(ctx)

    def collect(self, ctx: Context) -> Collected:
        dbpath = rpm_dbpath(ctx)
        if dbpath is None:
            return Collected()
        result = ctx.runner.run(
            "rpm", [*_base_args(str(ctx.root), dbpath), "-qa", "--queryformat", QUERY_FORMAT],
            timeout=QUERY_TIMEOUT,
        )
        return Collected(apps=parse_query(result.stdout))
