"""What a command imports decides how fast it starts (issue 14): these tests pin down that
collectors, PyYAML, requests, prometheus_client, subprocess, platform and the rest are imported
only when they are used."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

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


def test_a_check_of_the_bundled_list_imports_it_rather_than_parsing_it(tmp_path: Path) -> None:
    """The bundled list's Python twin makes its records (agent/banlist/source.bundled_banlist):
    parsing its JSON (the decoder and the schema's plans of four classes) cost 5 % of a check."""
    config = tmp_path / "agent.json"
    config.write_text("{}")
    code = ("import contextlib, io\nfrom agent.banlist import source\n"
            "def refuse(*args, **kwargs):\n    raise AssertionError('parsed')\n"
            "source.parse_banlist = refuse\nfrom agent.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['check', '--config', {str(config)!r}, '--source', 'dpkg']) in (0, 1)\n")
    assert "agent.bundled.banlist_example" in _modules_after(code)


def test_a_full_check_loads_no_parser_of_a_system_that_is_not_here() -> None:
    code = ("import contextlib, io\nfrom agent.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['check', '--root', '/nonexistent-root-for-test', '--format', 'json'])")
    loaded = _modules_after(code)
    assert not {"plistlib", "xml.etree.ElementTree", "configparser", "gzip", "concurrent.futures"} & loaded
    assert not {"platform", "uuid", "difflib"} & loaded


def test_a_live_full_check_imports_no_collector_that_its_precondition_rules_out(tmp_path: Path) -> None:
    """On Linux, with no gateway and no MDM configured, the Windows, macOS, phone and MDM
    collectors are ruled out by agent/inventory/preconditions.py before their modules load."""
    config = tmp_path / "agent.json"
    config.write_text("{}")
    code = ("import contextlib, io\nfrom agent.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main(['check', '--config', {str(config)!r}, '--format', 'json'])")
    loaded = _modules_after(code)
    assert "agent.inventory.dpkg" in loaded and "agent.inventory.preconditions" in loaded
    assert not {"agent.inventory.windows", "agent.inventory.macos", "agent.inventory.android", "agent.inventory.ios",
                "agent.inventory.gateway", "agent.inventory.connectors"} & loaded


@pytest.mark.parametrize("launcher", [False, True])
def test_a_full_check_of_a_volume_without_their_databases_imports_no_rpm_flatpak_pacman_apk_or_snap_collector(
        tmp_path: Path, launcher: bool) -> None:
    """agent/inventory/preconditions.py answers "no database here" for them before their modules
    load; the desktop collector, placing a launcher, asks it whether rpm could own one, and splits
    an Exec= line with nothing to unquote without shlex."""
    if launcher:
        (tmp_path / "usr/share/applications").mkdir(parents=True)
        (tmp_path / "usr/share/applications/x.desktop").write_text("[Desktop Entry]\nName=X\nExec=/usr/bin/x\n")
    code = ("from pathlib import Path\nfrom agent.inventory import collect\nfrom agent.inventory.base import Context\n"
            f"apps = collect(Context(root=Path({str(tmp_path)!r}), live=False)).apps\n"
            f"assert [a.name for a in apps] == {['X'] if launcher else []!r}")
    loaded = _modules_after(code)
    assert "agent.inventory.preconditions" in loaded
    assert not {"agent.inventory.rpm", "agent.inventory.flatpak", "agent.inventory.pacman", "agent.inventory.apk",
                "agent.inventory.snap", "configparser", "shlex"} & loaded


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


REPO = Path(__file__).resolve().parents[2]


def _modules_of_a_regular_install(code: str) -> set[str]:
    """Return the modules a fresh interpreter holds after running `code`, started as a regular
    install's is: this checkout's venv installs appban editable, and setuptools' editable finder,
    run by a `.pth` at every start, imports pathlib (and with it urllib.parse and ipaddress)
    before appban does. Here no `.pth` runs (-S); the checkout and the venv's site-packages are
    put on the path by hand."""
    path = [str(REPO), *site.getsitepackages()]
    prelude = f"import sys\nsys.path[1:1] = {path!r}\n"
    done = subprocess.run([sys.executable, "-S", "-c", f"{prelude}{code}\nprint(' '.join(sys.modules))"],
                          capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_a_dpkg_check_loads_no_module_imported_only_for_what_it_does_not_do(tmp_path: Path) -> None:
    """inspect (for dataclasses), traceback (for logging), ipaddress (for urllib.parse and for
    addresses in a list's domains) and ctypes (openat2, for many files) stay out of a check that
    reads three files; agent/__init__.py defers the first three."""
    config = tmp_path / "agent.json"
    config.write_text("{}")
    banlist = REPO / "config" / "banlist.example.json"  # agent.bundled is mapped by the editable finder only
    code = ("import contextlib, io\nfrom agent.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main(['check', '--config', {str(config)!r}, '--banlist', {str(banlist)!r}, '--source', 'dpkg'])")
    loaded = _modules_of_a_regular_install(code)
    assert {"agent.inventory.dpkg", "dataclasses", "logging", "pathlib", "agent.domains"} <= loaded
    assert not {"inspect", "traceback", "ipaddress", "ctypes", "ast", "dis", "tokenize", "linecache"} & loaded
    # pathlib's from-import of urllib.parse (for Path.as_uri) is deferred, and the config's URLs
    # are parsed only when it has some
    assert not {"urllib.parse", "urllib"} & loaded
    assert "datetime" not in loaded  # 3.11's module builds pure-Python classes it discards: agent.clock
    assert "copy" not in loaded  # deferred too: for dataclasses' asdict, astuple and replace's deep copies


def test_a_check_that_reads_no_document_and_writes_a_table_loads_no_json_or_typing() -> None:
    """No config file, the bundled list (its Python twin), a table: json is imported where a
    JSON document is read, a JSON report or log line written (agent.documents, agent.log,
    agent.report.jsontext), ~5 M instructions otherwise spent on every check; no domain name
    is read, so its pattern is not compiled either."""
    from agent.config import DEFAULT_PATH

    if Path(DEFAULT_PATH).exists():
        pytest.skip(f"{DEFAULT_PATH} exists here")
    code = ("import re._compiler\ncompiled = []\nreal = re._compiler.compile\n"
            "re._compiler.compile = lambda p, flags=0: compiled.append(p) or real(p, flags)\n"
            "import io, sys\nfrom agent.cli import main\nsys.stdout = io.StringIO()\n"
            "assert main(['check', '--source', 'dpkg']) in (0, 1)\nsys.stdout = sys.__stdout__\n"
            "from agent import domains\n"
            "assert compiled and domains._LDH not in compiled, compiled\n")
    loaded = _modules_after(code)  # the editable finder (it maps agent.bundled) imports no json
    assert "agent.inventory.dpkg" in loaded
    assert not {"json", "json.decoder", "json.encoder", "_json", "agent.report.jsontext"} & loaded
    assert "typing" not in loaded  # ~14 M instructions: for type checkers only (agent.hints)
    # and no contextlib, which typing imported; agent.gcpause was the one other module to use it
    assert "contextlib" not in _modules_of_a_regular_install("import agent.gcpause, agent.cli, agent.commands.check")


def test_patterns_standard_modules_compile_at_import_are_compiled_only_when_used(tmp_path: Path) -> None:
    """logging's str.format and $-template styles, string.Template, gettext's plural forms,
    locale's number formats, dpkg's line-by-line reading: none is used by a check of dpkg's own
    database, and none is compiled."""
    _run_a_dpkg_check(tmp_path, "import re._compiler\ncompiled = []\nreal = re._compiler.compile\n"
                      "re._compiler.compile = lambda p, flags=0: compiled.append(p) or real(p, flags)\n",
                      "import gettext, locale, logging, string\n"
                      "from agent.inventory import dpkg\n"
                      "lazy = [gettext._token_pattern, locale._percent_re, logging.StrFormatStyle.fmt_spec,\n"
                      "        logging.StrFormatStyle.field_spec, string.Template.pattern]\n"
                      "sources = {getattr(p, '_source', None) or p.pattern for p in lazy} | {dpkg._FIELD}\n"
                      "assert compiled and not sources & set(compiled), sources & set(compiled)\n")


def test_a_pattern_compiled_on_use_works_as_the_pattern_would() -> None:
    """What agent/__init__.py leaves to be compiled on use gives what the standard module did:
    gettext's plural forms (re.finditer of its pattern), string.Template, a str.format log style,
    locale's formats, unquote; and a Template subclass made afterwards gets a real pattern."""
    code = ("import agent, gettext, locale, logging, re, string, urllib.parse\n"
            "assert gettext.c2py('n != 1')(2) == 1 and gettext.c2py('n%10==1 ? 0 : 1')(11) == 0\n"
            "assert string.Template('$who is ${what}').substitute(who='it', what='lazy') == 'it is lazy'\n"
            "class Percent(string.Template):\n    delimiter = '%'\n"
            "assert isinstance(Percent.pattern, re.Pattern) and Percent('%a').substitute(a=1) == '1'\n"
            "record = logging.makeLogRecord({'msg': 'm', 'n': 3})\n"
            "assert logging.Formatter('{n:>4d} {message}', style='{').format(record) == '   3 m'\n"
            "assert locale.format_string('%5.1f', 2.25) == '  2.2'\n"
            "assert urllib.parse.unquote('a%20b%C3%A9') == 'a b\u00e9'\n")
    _modules_of_a_regular_install(code)


def test_pathlib_imports_urllib_parse_when_a_path_becomes_a_uri() -> None:
    """pathlib takes quote_from_bytes from urllib.parse for Path.as_uri: agent/__init__.py gives
    it a function that imports urllib.parse (still without ipaddress) when first called."""
    code = ("import sys, agent, pathlib\nassert 'urllib.parse' not in sys.modules\n"
            "assert pathlib.Path('/a b/\u00e9').as_uri() == 'file:///a%20b/%C3%A9'\n"
            "import urllib.parse\nassert pathlib.urlquote_from_bytes.__name__ == 'quote_from_bytes'\n"
            "assert 'ipaddress' not in sys.modules\n"
            "assert urllib.parse.urlsplit('https://[::1]:8443/').hostname == '::1' and 'ipaddress' in sys.modules\n")
    _modules_of_a_regular_install(code)


def test_a_deferred_module_is_the_real_one_when_it_is_used() -> None:
    """What agent/__init__.py defers is imported as soon as it is needed: a dataclass without a
    docstring gets its signature, a logged exception its traceback, a bracketed host its check."""
    code = ("import agent, dataclasses, io, logging, urllib.parse\n"
            "@dataclasses.dataclass\nclass Point:\n    x: int\n"
            "out = io.StringIO()\nlogger = logging.getLogger('t')\nlogger.addHandler(logging.StreamHandler(out))\n"
            "try:\n    1 / 0\nexcept ZeroDivisionError:\n    logger.exception('failed')\n"
            "assert Point.__doc__ == 'Point(x: int)', Point.__doc__\n"
            "assert 'Traceback' in out.getvalue() and 'ZeroDivisionError' in out.getvalue(), out.getvalue()\n"
            "assert urllib.parse.urlsplit('https://[::1]:8443/').hostname == '::1'\n"
            "import pathlib\nassert pathlib.Path('/a b').as_uri() == 'file:///a%20b'\n"
            "import inspect, traceback, ipaddress\n"
            "assert dataclasses.inspect.signature is inspect.signature and logging.traceback.format_exc is traceback.format_exc\n")
    loaded = _modules_of_a_regular_install(code)
    assert {"inspect", "traceback", "ipaddress"} <= loaded


@pytest.mark.skipif(not hasattr(os, "O_PATH"), reason="openat2 is Linux's")
def test_openat2_is_loaded_only_after_the_first_files_are_walked(tmp_path: Path) -> None:
    """ctypes (openat2's binding) costs what walking about a hundred paths does: a scan loads it
    only once it has read reading.WALKED_FIRST files, and reads them the same either way."""
    files = [tmp_path / f"f{i}" for i in range(70)]
    for number, path in enumerate(files):
        path.write_text(str(number))
    code = ("from agent.inventory.reading import WALKED_FIRST, read_bytes\nimport sys\n"
            f"paths = {[str(p) for p in files]!r}\n"
            "first = [read_bytes(p) for p in paths[:WALKED_FIRST]]\nassert 'ctypes' not in sys.modules\n"
            "rest = [read_bytes(p) for p in paths[WALKED_FIRST:]]\n"
            "assert [int(b) for b in first + rest] == list(range(len(paths)))\n")
    assert "ctypes" in _modules_of_a_regular_install(code)


def _run_a_dpkg_check(tmp_path: Path, before: str, after: str) -> None:
    """Run, in a regular install's interpreter, `before`, then `appban check --source dpkg` of
    the example list with an empty config (its verdict must be 0 or 1), then `after`."""
    config = tmp_path / "agent.json"
    config.write_text("{}")
    banlist = REPO / "config" / "banlist.example.json"
    code = (before + "import contextlib, io\nfrom agent.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    verdict = main(['check', '--config', {str(config)!r}, '--banlist', {str(banlist)!r}, "
            "'--source', 'dpkg'])\n"
            "assert verdict in (0, 1), verdict\n" + after)
    _modules_of_a_regular_install(code)


def test_a_check_never_calls_the_compile_builtin(tmp_path: Path) -> None:
    """Its first call in a process sets up Python's AST types (~1.5 ms): typing's ForwardRef
    (get_type_hints) and agent.records' stub used to make it."""
    _run_a_dpkg_check(tmp_path, "import builtins\ncalls = []\nreal = builtins.compile\n"
                      # a source file without its .pyc is compiled too: only code made from strings counts
                      "builtins.compile = lambda *a, **k: (str(a[1]).startswith('<') and calls.append(a[1])) "
                      "or real(*a, **k)\n",
                      "assert not calls, calls\n")


def test_a_dpkg_check_compiles_no_version_or_guid_pattern(tmp_path: Path) -> None:
    """agent.versions' four patterns and agent.platform.identity's GUID patterns are compiled on
    first use (a few hundred thousand instructions each): a check of the bundled list (no
    version constraints), on a host without Windows or macOS volumes, compiles none of them."""
    _run_a_dpkg_check(tmp_path, "import re._compiler\ncompiled = []\nreal = re._compiler.compile\n"
                      "re._compiler.compile = lambda p, flags=0: compiled.append(p) or real(p, flags)\n"
                      "from agent import versions\nfrom agent.platform import identity\n",
                      "lazy = {getattr(p, 'pattern', p) for p in (versions._TOKEN, versions._EPOCH, versions._CLAUSE,\n"
                      "        versions._RPM_TOKEN, identity._GUID, identity._IOREG_UUID)}\n"
                      "assert compiled and not lazy & set(compiled), lazy & set(compiled)\n")


def test_a_dpkg_check_compiles_no_method_with_the_standard_dataclass_decorator(tmp_path: Path) -> None:
    """The standard decorator compiles a class's methods when its module is imported (~1 M
    instructions a class): the records a check defines are made by agent.records, and what is
    not a record (schema's plans, a collector's result) does not use the decorator."""
    _run_a_dpkg_check(tmp_path, "import dataclasses\nmade = []\nreal = dataclasses._process_class\n"
                      "def counting(cls, init, repr, eq, *rest):\n"
                      "    if init or repr or eq:\n        made.append(cls.__qualname__)\n"
                      "    return real(cls, init, repr, eq, *rest)\n"
                      "dataclasses._process_class = counting\n",
                      "assert not made, made\n")


def _records_the_schema_builds() -> list[type]:
    import dataclasses

    from agent import config, model
    from agent.banlist import cache
    from agent.fleet import config as fleet_config

    return [c for module in (config, model, cache, fleet_config) for c in vars(module).values()
            if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == module.__name__]


def test_the_schemas_type_hints_are_get_type_hints() -> None:
    import typing

    from agent.schema import type_hints

    records = _records_the_schema_builds()
    assert len(records) > 30
    for record in records:
        assert type_hints(record) == typing.get_type_hints(record), record


def test_the_literals_spelt_out_for_run_time_are_the_type_checkers_aliases() -> None:
    """Device.ownership and Finding.status spell out model.Ownership and model.Status (aliases
    for type checkers only, agent.hints); resolved, they are typing's Literal of the same values."""
    import typing

    from agent.model import STATUSES, Device, Finding

    assert typing.get_type_hints(Finding)["status"] == typing.Literal[STATUSES]
    assert typing.get_type_hints(Device)["ownership"] == typing.Literal["corporate", "personal", "unknown"]
    assert typing.get_args(typing.get_type_hints(Device)["ownership"]) == ("corporate", "personal", "unknown")


def test_what_eval_alone_would_not_resolve_goes_to_get_type_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    """A quoted name inside an annotation, Annotated and None are resolved as get_type_hints does."""
    import types
    import typing

    from agent.schema import type_hints

    module = types.ModuleType("appban_test_hints")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec("from __future__ import annotations\nimport typing\nclass Inner: pass\n"  # noqa: S102
         "class Outer:\n    a: tuple['Inner', ...]\n    b: typing.Annotated[int, 'unit']\n    c: None\n"
         "    d: str | None\n", vars(module))
    assert type_hints(module.Outer) == typing.get_type_hints(module.Outer) == {
        "a": tuple[module.Inner, ...], "b": int, "c": type(None), "d": str | None}
