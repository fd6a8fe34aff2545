"""Import directions between appban's layers, read from the source (lazy imports included).

Arrows point down: the CLI and the service sit on the scan pipeline, which sits on the
collectors, matcher, enforcement and reporters, which sit on the model and config. A module that
reaches up or sideways makes the next person's change ripple through layers they did not touch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "agent"

FORBIDDEN: tuple[tuple[str, str, str], ...] = (
    ("agent.report", "agent.service", "reporters render what the service hands them"),
    ("agent.report", "agent.commands", "reporters render what the CLI hands them"),
    ("agent.service", "agent.commands", "the service shares the scan pipeline, not the CLI layer"),
    ("agent.scan", "agent.commands", "the pipeline is below the CLI"),
    ("agent.scan", "agent.service", "the pipeline is below the service"),
    ("agent.config", "agent.banlist", "config is below the ban-list layer (keys: agent.banlist.keys)"),
    ("agent.model", "agent.", "the model is the bottom layer (agent.versions and agent.domains only)"),
    ("agent.sources", "agent.", "the per-source facts are a pure table"),
)
ALLOWED = {("agent.model", "agent.versions"), ("agent.model", "agent.domains"), ("agent.model", "agent.records"),
           ("agent.model", "agent.hints"), ("agent.model", "agent.clock"), ("agent.sources", "agent.records")}
"""versions and domains: pure leaves (version specs, DNS names) the model validates with; records:
the dataclass decorator, hints: typing's Literal for annotations, and clock: datetime's types
(leaves that import only the standard library)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Return every agent module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "agent" or name.startswith("agent.")}


GRAPH = {module_name(path): imports(path) for path in PACKAGE.rglob("*.py")}


def within(name: str, layer: str) -> bool:
    return name == layer.rstrip(".") or name.startswith(layer if layer.endswith(".") else layer + ".")


@pytest.mark.parametrize(("lower", "upper", "why"), FORBIDDEN)
def test_no_import_points_up(lower: str, upper: str, why: str) -> None:
    wrong = sorted(
        f"{module} imports {target}" for module, targets in GRAPH.items() if within(module, lower)
        for target in targets
        if within(target, upper) and target in GRAPH and (module, target) not in ALLOWED and module != target
        and not within(target, lower)
    )
    assert not wrong, f"{why}: {wrong}"


def test_the_ban_list_layer_has_no_import_cycle() -> None:
    """central ↔ source once imported each other (for `staleness`, now in the model)."""
    banlist = {m: {t for t in ts if t.startswith("agent.banlist.") and t in GRAPH}
               for m, ts in GRAPH.items() if m.startswith("agent.banlist.")}
    for start in banlist:
        seen, todo = set(), list(banlist[start])
        while todo:
            current = todo.pop()
            assert current != start, f"{start} imports itself through {sorted(seen)}"
            if current not in seen:
                seen.add(current)
                todo.extend(banlist.get(current, ()))


def test_the_graph_was_read() -> None:
    """A check that finds no modules would pass vacuously."""
    assert "agent.scan" in GRAPH["agent.commands.check"] and "agent.scan" in GRAPH["agent.service.daemon"]
    assert "agent.report.snapshot" in GRAPH["agent.report.metrics"]


def test_the_models_leaves_import_nothing_of_appban() -> None:
    """What the model may import must itself be a leaf, or the exception would hide a cycle."""
    for leaf in ("agent.versions", "agent.domains"):
        assert not {t for t in GRAPH[leaf] if t in GRAPH} - {"agent.records"}, leaf
    assert not {t for t in GRAPH["agent.records"] if t in GRAPH}
