"""A real, throwaway PostgreSQL 15 cluster for the storage tests (Debian package `postgresql`).

The session fixture runs initdb and pg_ctl from /usr/lib/postgresql/15/bin (never a shim on
PATH) as an unprivileged user — a uniquely named system user it creates and deletes when the
tests run as root, else the current user — in a fresh folder under /tmp, listening on a free port
of 127.0.0.1 only, with password (SCRAM) authentication over TCP. `pg_database` gives each test
its own database, dropped afterwards. The cluster is stopped and its folder removed at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.banlist_servers import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "appban-test-" + secrets.token_hex(8)
TIMEOUT = 120


def _as(user: str | None) -> dict[str, object]:
    return {"user": user, "group": user} if user else {}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Start the cluster; yield the SQLAlchemy URL of its `postgres` database (superuser `appban`)."""
    if not (PG_BIN / "initdb").exists():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL 15 is not installed (scripts/apt-packages.txt should install it)")
        pytest.skip("PostgreSQL 15 is not installed")
    with throwaway_cluster() as url:
        yield url


@contextmanager
def throwaway_cluster(fsync: bool = False) -> Iterator[str]:
    """Run a PostgreSQL cluster for as long as the block runs (the fixture's, and the benchmark's:
    `fsync` True, as a production cluster runs, so its figures include durable commits)."""
    user = None
    if os.geteuid() == 0:
        user = f"appban-pg-{secrets.token_hex(4)}"
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        user], check=True, timeout=TIMEOUT)
    folder = Path(tempfile.mkdtemp(prefix="appban-pg-"))
    data = folder / "data"
    port = free_port()
    try:
        (folder / "pwfile").write_text(PASSWORD + "\n")
        if user:
            shutil.chown(folder, user, user)
            shutil.chown(folder / "pwfile", user, user)
        subprocess.run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "appban", "--pwfile", str(folder / "pwfile"),
                        "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--no-instructions"],
                       check=True, capture_output=True, timeout=TIMEOUT, **_as(user))
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync={'on' if fsync else 'off'} -c max_connections=100"
        subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-o", options, "-w",
                        "-t", "60", "start"], check=True, capture_output=True, timeout=TIMEOUT, **_as(user))
        yield f"postgresql+psycopg://appban:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                           capture_output=True, timeout=TIMEOUT, **_as(user))
        shutil.rmtree(folder, ignore_errors=True)
        if user:
            subprocess.run(["userdel", user], capture_output=True, timeout=TIMEOUT)


@pytest.fixture
def pg_database(postgres_server: str) -> Iterator[str]:
    """A fresh database in the test cluster for one test; yield its URL, drop it afterwards."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    admin = postgres_server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on SQLite (a file in tmp_path) and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.sqlite'}"
    return request.getfixturevalue("pg_database")
