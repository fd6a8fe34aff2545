"""Issue 11's kill run, reproduced: in a real PID namespace of its own (`unshare --pid --fork
--mount-proc`, so only processes started here can be seen or signalled), eight running programs
and `appban check --enforce` with a list banning `names: ["*"]`. Before the one cap covered kills
it killed them; now the whole plan is refused as too many and every process lives."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))
from enforce_support import banlist_yaml, config_yaml, need_root  # noqa: E402

TOP = Path(__file__).parents[2]


def test_names_star_kills_nothing_in_a_pid_namespace(tmp_path: Path) -> None:
    need_root()
    programs = tmp_path / "bin"
    programs.mkdir()
    for i in range(8):
        (programs / f"worker{i}").write_bytes(Path("/bin/sleep").read_bytes())
        (programs / f"worker{i}").chmod(0o755)
    banlist = tmp_path / "list.yaml"
    banlist.write_text(banlist_yaml([{"id": "everything", "match": {"names": ["*"]}}]))
    config = tmp_path / "agent.yaml"
    config.write_text(config_yaml(Path("/"), tmp_path / "state").replace("[dpkg, desktop]", "[process]"))
    driver = textwrap.dedent(f"""
        import json, subprocess, sys
        workers = [subprocess.Popen([{str(programs)!r} + f"/worker{{i}}", "300"]) for i in range(8)]
        done = subprocess.run([sys.executable, "-m", "agent", "check", "--banlist", {str(banlist)!r},
                               "--config", {str(config)!r}, "--enforce", "--format", "json"],
                              cwd={str(TOP)!r}, capture_output=True, text=True, timeout=120)
        alive = [w.poll() is None for w in workers]
        for w in workers:
            w.kill()
        print(json.dumps({{"alive": alive, "stdout": done.stdout, "stderr": done.stderr}}))
    """)
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", driver],
                          capture_output=True, text=True, timeout=180)
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"cannot make a PID namespace here: {done.stderr.strip()}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["alive"] == [True] * 8, result["stderr"]
    outcomes = {f["app"]["path"]: f["outcome"] for f in json.loads(result["stdout"])["findings"]}
    workers = {path: o for path, o in outcomes.items() if "/worker" in path}
    assert len(workers) == 8
    assert all(o.startswith("refused: too many — refused (") and " kill" in o for o in workers.values()), workers
