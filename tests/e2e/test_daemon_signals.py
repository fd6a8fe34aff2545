"""Signals and the service (issue 11): a stop request is honoured while a scan is stuck, a bad
reload never kills the service, and the wake-up the handlers poke takes no lock."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

from tests.service_support import Daemon, wait_until, write_config
from tests.stand_ins import stand_in


def test_sigterm_is_honoured_while_a_scan_is_stuck(tmp_path: Path) -> None:
    tool = stand_in(tmp_path / "rpm", hang=600)  # hangs as on a dead NFS mount
    config = write_config(tmp_path, commands={"rpm": str(tool)})
    data = yaml.safe_load(config.read_text())
    # an rpm database marker under the test root, so the rpm collector runs the stand-in
    (Path(data["inventory"]["root"]) / "var/lib/rpm").mkdir(parents=True)
    (Path(data["inventory"]["root"]) / "var/lib/rpm/rpmdb.sqlite").write_bytes(b"")
    data["inventory"]["sources"] = ["dpkg", "rpm"]
    config.write_text(yaml.safe_dump(data))
    daemon = Daemon(config)
    try:
        wait_until(tool.pids, timeout=40)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(20) == 0
        assert daemon.events("scan.abandoned")
        assert not daemon.events("scan.done")
        (stuck,) = tool.pids()
        wait_until(lambda: not Path(f"/proc/{stuck}").exists() or _zombie(stuck), timeout=20)
    finally:
        daemon.stop()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


HANDLER_EVERYWHERE = textwrap.dedent("""
    import signal, sys, threading
    from agent.service.wakeup import Wakeup

    wake = Wakeup() if sys.argv[1] == "wakeup" else threading.Event()
    seen = set()

    def handler_at_every_step(frame, event, arg):
        # Run the signal handler's body once at every line the main thread executes inside the
        # wake-up's own code, as a real signal may (Python runs handlers between bytecodes).
        where = (frame.f_code.co_filename, frame.f_lineno)
        if where[0].endswith(("threading.py", "wakeup.py")) and where not in seen:
            seen.add(where)
            sys.settrace(None)
            wake.set()
            sys.settrace(handler_at_every_step)
        return handler_at_every_step

    sys.settrace(handler_at_every_step)
    for _ in range(20):
        wake.clear()
        wake.wait(0.001)
    sys.settrace(None)
    print("done", len(seen))
""")


def _run_handler_everywhere(kind: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run([sys.executable, "-c", HANDLER_EVERYWHERE, kind], capture_output=True, text=True,
                              timeout=15)
    except subprocess.TimeoutExpired:
        return None


def test_the_wakeup_takes_no_lock_a_signal_handler_could_deadlock_on() -> None:
    assert _run_handler_everywhere("event") is None  # threading.Event: set() inside wait() deadlocks
    done = _run_handler_everywhere("wakeup")
    assert done is not None and done.returncode == 0, done and done.stderr
    assert done.stdout.startswith("done ") and int(done.stdout.split()[1]) >= 8


def test_sighup_wakes_the_sleeping_service_promptly(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    daemon = Daemon(config)
    try:
        wait_until(lambda: daemon.events("scan.done"), timeout=40)
        for attempt in range(1, 6):
            daemon.signal(signal.SIGHUP)
            wait_until(lambda: len(daemon.events("config.reloaded")) >= attempt, timeout=40)
            time.sleep(0.05)
    finally:
        daemon.signal(signal.SIGTERM)
        daemon.wait()
        daemon.stop()


BAD_RELOADS = [
    ("push", {"url": "https://[x"}, "push.url"),
    ("push", {"url": "https://reports.example:99999/v1"}, "push.url"),
    ("push", {"url": "ftp://reports.example/"}, "push.url"),
    ("banlist", {"url": "https://[::1/list.yaml"}, "banlist.url"),
    ("schedule", {"scan": "soon"}, "schedule.scan"),
]


def test_a_bad_config_on_reload_keeps_the_old_one_and_the_service_running(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    good = config.read_text()
    daemon = Daemon(config)
    try:
        wait_until(lambda: daemon.events("scan.done"), timeout=40)
        for number, (section, values, key) in enumerate(BAD_RELOADS, 1):
            data = yaml.safe_load(good)
            data[section] = {**data.get(section, {}), **values}
            config.write_text(yaml.safe_dump(data))
            daemon.signal(signal.SIGHUP)
            rejected = wait_until(lambda: (lambda seen: seen if len(seen) >= number else None)(
                daemon.events("config.rejected")), timeout=40)
            assert key in rejected[-1]["error"], rejected[-1]
            assert daemon.process.poll() is None
        config.write_text(good)
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: daemon.events("config.reloaded"), timeout=40)
        assert not daemon.events("job.failed")
    finally:
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        daemon.stop()
