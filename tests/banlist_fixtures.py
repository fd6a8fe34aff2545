"""The pytest fixtures over tests/banlist_servers.py (kept apart so that the benchmarks, which
use the servers, run without pytest): `pki`, `nginx`, `scripted`, `site` and `direct`."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.banlist_servers import Nginx, Pki, ScriptedServer, Site, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Nginx]:
    server = Nginx(tmp_path_factory.mktemp("nginx"), pki).start()
    yield server
    server.stop()


@pytest.fixture
def scripted(pki: Pki) -> Iterator[ScriptedServer]:
    server = ScriptedServer(pki).start()
    yield server
    server.stop()


@pytest.fixture
def site(nginx: Nginx, request: pytest.FixtureRequest) -> Site:
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "_")
    return Site(nginx, name)


@pytest.fixture
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """Talk to 127.0.0.1 directly even where the environment names a proxy."""
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
