"""What a command imports decides how fast it starts (issue 14): these tests pin down that
collectors, PyYAML, requests, prometheus_client, subprocess, platform and the rest are imported
only when they are used."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.inventory import collector_names, load_collector, select


def test_every_registered_collector_loads_under_its_own_name() -> None:
    for name in collector_names():
        assert load_collector(name).name == name


def test_select_keeps_registry_order_and_loads_only_what_was_asked() -> None:
    assert [c.name for c in select(["rpm", "dpkg"])] == ["dpkg", "rpm"]
    assert [c.name for c in select([])] == collector_names()


def _modules_after(code: str) -> set[str]:
    """Return the modules a fresh interpreter holds after running `code`."""
    done = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                          capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize(("code", "absent"), [
    ("from agent.inventory import select; select(['dpkg'])",
     {"agent.inventory.process", "psutil", "agent.inventory.windows", "agent.inventory.android", "yaml"}),
    ("from agent.documents import load_document; load_document(b'{\"a\": 1}', 'x')", {"yaml"}),
    ("import agent.service.daemon", {"requests", "prometheus_client", "agent.banlist.central", "sqlite3", "psutil",
                                     "agent.enforce.guard", "agent.enforce.execguard", "agent.enforce.fapolicyd",
                                     "agent.export", "agent.inventory.mdm", "subprocess", "ctypes",
                                     # the pull endpoint without http.server: no HTTP client, mail parser or TLS
                                     "http.server", "http.client", "email", "ssl", "shutil", "hmac", "secrets",
                                     "_hashlib"}),
])
def test_modules_are_imported_on_use(code: str, absent: set[str]) -> None:
    assert not absent & _modules_after(code)


def test_a_check_against_the_bundled_list_loads_no_yaml_network_or_mdm_code(tmp_path) -> None:
    config = tmp_path / "agent.json"
    config.write_text("{}")  # a JSON config, so that reading the config needs no YAML either
    code = ("import contextlib, io\nfrom agent.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main(['check', '--config', {str(config)!r}, '--source', 'dpkg', '--format', 'json'])")
    loaded = _modules_after(code)
    assert "agent.inventory.dpkg" in loaded
    assert not {"yaml", "requests", "agent.inventory.mdm", "importlib.resources", "psutil", "idna", "ssl"} & loaded
    # nothing is run, no id is made with uuid (which runs platform), no typo is suggested and
    # no file copied (shutil: argparse and the table measure the terminal through agent.terminal)
    assert not {"subprocess", "platform", "uuid", "socket", "difflib", "signal", "shutil"} & loaded


def test_a_full_check_loads_no_parser_of_a_system_that_is_not_here() -> None:
    code = ("import contextlib, io\nfrom agent.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['check', '--root', '/nonexistent-root-for-test', '--format', 'json'])")
    loaded = _modules_after(code)
    assert not {"plistlib", "xml.etree.ElementTree", "configparser", "gzip", "concurrent.futures"} & loaded
    assert not {"platform", "uuid", "difflib"} & loaded


def test_a_live_check_lists_processes_without_psutil() -> None:
    """On Linux the process collector reads /proc itself (agent.inventory.process)."""
    code = ("import contextlib, io\nfrom agent.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['check', '--source', 'process', '--format', 'json'])")
    loaded = _modules_after(code)
    assert "agent.inventory.process" in loaded and "psutil" not in loaded


def test_frozen_records_on_the_start_up_path_are_made_by_agent_records() -> None:
    """agent.records (not the standard decorator, which compiles six methods per class when
    it is defined) makes the config's and the model's records."""
    from agent import config, model, records

    for module in (config, model):
        made = [c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__
                and "__dataclass_fields__" in c.__dict__]
        assert made and all(c.__setattr__.__code__.co_filename == records.__file__ for c in made), module


def test_yaml_is_still_read_when_a_document_is_yaml() -> None:
    assert "yaml" in _modules_after("from agent.documents import load_document; load_document(b'a: 1', 'x')")
