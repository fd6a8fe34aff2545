"""Print the agent's runtime dependencies for one packaging target, from pyproject.toml.

Why a script: pip evaluates environment markers against the Python that runs it, not the target
of `--platform`, so the .msi build must be told which requirements Windows needs; the .deb and
.rpm builds map the same names to the distributions' packages.

Usage: python3 packaging/dependencies.py windows|debian|rpm
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
DEBIAN = {"psutil": "python3-psutil", "requests": "python3-requests", "pyyaml": "python3-yaml",
          "schedule": "python3-schedule", "cryptography": "python3-cryptography",
          "idna": "python3-idna", "regipy": None,
          "truststore": None, "msgspec": None}
"""Debian's package for each requirement; None: not in Debian 12 (regipy, truststore, msgspec) —
optional there (appban works without them: msgspec only makes large JSON documents faster)."""
RPM = {"psutil": "python3-psutil", "requests": "python3-requests", "pyyaml": "python3-pyyaml",
       "schedule": "python3-schedule", "cryptography": "python3-cryptography",
       "idna": "python3-idna", "regipy": None,
       "truststore": None, "msgspec": None}
"""Fedora/RHEL (EPEL) names; None as above (the spec Recommends python3-msgspec, which Fedora
packages and RHEL may not: a weak dependency, installed where the distribution has it)."""


def requirements() -> list[tuple[str, str, str]]:
    """Return (normalised name, requirement without marker, marker) for each dependency."""
    declared = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    found = []
    for line in declared:
        requirement, _, marker = (part.strip() for part in line.partition(";"))
        name = re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0]
        found.append((re.sub(r"[-_.]+", "-", name).lower(), requirement, marker))
    return found


def main(target: str) -> int:
    if target == "windows":
        print(" ".join(requirement for _, requirement, _ in requirements()))
        return 0
    table = {"debian": DEBIAN, "rpm": RPM}.get(target)
    if table is None:
        raise SystemExit(f"unknown target {target!r} (windows, debian, rpm)")
    missing = [name for name, _, _ in requirements() if name not in table]
    if missing:
        raise SystemExit(f"no {target} package known for {', '.join(missing)}: add it to packaging/dependencies.py")
    print(", ".join(table[name] for name, _, _ in requirements() if table[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
