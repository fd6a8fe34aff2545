"""The quarantine store on real files: a program with a name at the file-name limit can be
quarantined."""

from __future__ import annotations

from pathlib import Path

from agent.enforce.quarantine import quarantine, restore


def test_a_name_at_the_file_name_limit_is_quarantined_and_restored(tmp_path: Path) -> None:
    root, store = tmp_path / "root", tmp_path / "store"
    program = root / "home/ana/Apps" / ("t" * 255)
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    record = quarantine(str(root), store, [f"/home/ana/Apps/{program.name}"], "tiktok", "tiktok")
    assert not program.exists()
    restore(str(root), store, record.id)
    assert program.read_text() == "#!/bin/sh\n"
