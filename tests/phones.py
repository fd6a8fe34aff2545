"""Stand-in `adb`, `idevice_id`, `ideviceinfo` and `ideviceinstaller` executables for tests.

There are no phones here, so each stand-in is a small Python script that logs the arguments it was
called with (one JSON list per line) and replays the recorded output of the real tool for exactly
those arguments; any other arguments exit 97 with a message, so a test sees an unexpected call.
The recorded outputs live in tests/fixtures/phones (README.md there names the tool and version
behind each format).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "phones"

_SCRIPT = """#!{python}
import json, sys, time
args = sys.argv[1:]
with open({log!r}, "a", encoding="utf-8") as log:
    log.write(json.dumps([{tool!r}, *args]) + "\\n")
with open({spec!r}, encoding="utf-8") as spec:
    reply = json.load(spec).get(json.dumps(args))
if reply is None:
    sys.stderr.write("stand-in {tool}: unexpected arguments %r\\n" % (args,))
    sys.exit(97)
time.sleep(reply["sleep"])
for name, stream in (("stdout", sys.stdout.buffer), ("stderr", sys.stderr.buffer)):
    if reply[name]:
        with open(reply[name], "rb") as recorded:
            stream.write(recorded.read())
sys.exit(reply["exit"])
"""


@dataclass(frozen=True)
class Reply:
    """What a stand-in does for one argument list: print a fixture file, exit, maybe hang first."""

    stdout: str = ""
    stderr: str = ""
    exit: int = 0
    sleep: float = 0.0

    def to_dict(self) -> dict:
        return {
            "stdout": str(FIXTURES / self.stdout) if self.stdout else "",
            "stderr": str(FIXTURES / self.stderr) if self.stderr else "",
            "exit": self.exit, "sleep": self.sleep,
        }


def install(folder: Path, tool: str, replies: dict[tuple[str, ...], Reply], log: Path) -> str:
    """Write the stand-in `tool` into `folder` and return its path (for config `commands:`)."""
    spec = folder / f"{tool}.json"
    spec.write_text(json.dumps({json.dumps(list(args)): r.to_dict() for args, r in replies.items()}))
    script = folder / tool
    script.write_text(_SCRIPT.format(python=sys.executable, log=str(log), spec=str(spec), tool=tool))
    os.chmod(script, 0o755)
    return str(script)


def calls(log: Path) -> list[list[str]]:
    """Return every call the stand-ins logged, in order, as [tool, *arguments]."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


SAMSUNG, PIXEL2, STUCK = "R58M31ABCDE", "0123456789ABCDEF", "HT7A1B234567"
"""The phones of the Android scenario: a Galaxy S21 (Android 14) with a work profile (user 10),
a Pixel 2 (Android 8.1, whose `pm` predates --show-versioncode) and a phone that never answers;
`adb devices -l` also lists an unauthorized and an offline one."""


def _shell(serial: str, *words: str) -> tuple[str, ...]:
    return ("-s", serial, "shell", *words)


def _pm_list(serial: str, *flags: str) -> tuple[str, ...]:
    return _shell(serial, "pm", "list", "packages", *flags)


FULL = ("-f", "-U", "--show-versioncode", "-i")
LIST_OWNERS = ("cmd", "device_policy", "list-owners")


def android_replies(stuck_for: float) -> dict[tuple[str, ...], Reply]:
    """The recorded `adb` conversation of the Android scenario; the stuck phone hangs `stuck_for`
    seconds on its first call."""
    return {
        ("devices", "-l"): Reply("adb-devices-l.txt"),
        _shell(SAMSUNG, "getprop"): Reply("samsung-getprop.txt"),
        _shell(SAMSUNG, "settings", "get", "global", "device_name"): Reply("samsung-device-name.txt"),
        _shell(SAMSUNG, "dumpsys", "package", "packages"): Reply("samsung-dumpsys-packages.txt"),
        _shell(SAMSUNG, *LIST_OWNERS): Reply("samsung-list-owners.txt"),
        _shell(SAMSUNG, "pm", "list", "users"): Reply("samsung-users.txt"),
        _pm_list(SAMSUNG, "-3", "--user", "0"): Reply("samsung-third-party-user0.txt"),
        _pm_list(SAMSUNG, "-d", "--user", "0"): Reply("samsung-disabled-user0.txt"),
        _pm_list(SAMSUNG, *FULL, "--user", "0"): Reply("samsung-packages-user0.txt"),
        _pm_list(SAMSUNG, "-3", "--user", "10"): Reply("samsung-third-party-user10.txt"),
        _pm_list(SAMSUNG, "-d", "--user", "10"): Reply("empty.txt"),
        _pm_list(SAMSUNG, *FULL, "--user", "10"): Reply("samsung-packages-user10.txt"),
        _shell(PIXEL2, "getprop"): Reply("pixel2-getprop.txt"),
        _shell(PIXEL2, "settings", "get", "global", "device_name"): Reply("settings-null.txt"),
        _shell(PIXEL2, "dumpsys", "package", "packages"): Reply("pixel2-dumpsys-packages.txt"),
        _shell(PIXEL2, *LIST_OWNERS): Reply(stderr="pixel2-no-device-policy-command.txt", exit=255),
        _shell(PIXEL2, "pm", "list", "users"): Reply("pixel2-users.txt"),
        _pm_list(PIXEL2, "-3", "--user", "0"): Reply("pixel2-third-party.txt"),
        _pm_list(PIXEL2, "-d", "--user", "0"): Reply("empty.txt"),
        _pm_list(PIXEL2, *FULL, "--user", "0"): Reply(stderr="pixel2-unknown-option.txt", exit=255),
        _pm_list(PIXEL2, "-f", "-i", "--user", "0"): Reply("pixel2-packages-old.txt"),
        _shell(STUCK, "getprop"): Reply("empty.txt", sleep=stuck_for),
    }


def android_calls_expected() -> list[list[str]]:
    """Every `adb` call the collector must make in the Android scenario (order aside)."""
    return sorted(["adb", *args] for args in android_replies(0))


IPHONE, IPHONE_UNTRUSTED = "00008030-001A35E11E88802E", "4f1c2e9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d"


def ios_replies(help_file: str, list_args: tuple[str, ...]) -> dict[str, dict[tuple[str, ...], Reply]]:
    """The recorded libimobiledevice conversation per tool: one trusted iPhone 11 and one whose
    pairing prompt is pending; `help_file` picks the ideviceinstaller generation."""
    return {
        "idevice_id": {("-l",): Reply("idevice_id-l.txt")},
        "ideviceinfo": {
            ("-u", IPHONE, "-x"): Reply("ideviceinfo-x.xml"),
            ("-u", IPHONE_UNTRUSTED, "-x"): Reply(stderr="ideviceinfo-pairing-pending.txt", exit=1),
        },
        "ideviceinstaller": {
            ("--help",): Reply(help_file),
            ("-u", IPHONE, *list_args): Reply("ideviceinstaller-list.xml"),
        },
    }
