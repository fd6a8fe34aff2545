"""agent.exposition, the text format appban writes for Prometheus, held to prometheus_client:
the same text byte for byte as its `generate_latest` for the same families, and read back by
its parser to what was written (the real Prometheus scrapes are in tests/e2e)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from agent import exposition
from agent.exposition import Family, counter, gauge, render
from agent.fleet.metrics import Counters
from agent.fleet.metrics import families as fleet_families
from agent.report.metrics import SnapshotCollector
from agent.report.snapshot import Snapshot
from tests.unit.test_service_pure import NOW, snapshot

NAMES = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,12}", fullmatch=True).filter(lambda n: n.removesuffix("_total"))
LABELS = st.lists(st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,8}", fullmatch=True), max_size=3, unique=True)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
"""Any text UTF-8 can carry; with backslashes, quotes and line feeds among the likely ones."""
HELP = st.text(st.sampled_from('ab \\"\n\t{}=,#é😀'), max_size=12).filter(lambda h: h == h.strip(" \t"))
"""HELP text the parser can give back as written: it strips a line's surrounding blanks."""
VALUES = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**12, 10**12)


@st.composite
def specs(draw: st.DrawFn) -> list[tuple[str, str, str, list[str] | None, list[tuple[list[str], float]]]]:
    """Families as (type, name, help, label names or None for one unlabelled value, samples)."""
    drawn = []
    for name in draw(st.lists(NAMES, max_size=4, unique_by=lambda n: n.removesuffix("_total"))):
        kind, documentation = draw(st.sampled_from(exposition.TYPES)), draw(HELP)
        labels = draw(st.none() | LABELS)
        count = 1 if labels is None else draw(st.integers(0, 3))
        samples = [([draw(TEXT) for _ in labels or ()], draw(VALUES)) for _ in range(count)]
        drawn.append((kind, name, documentation, labels, samples))
    return drawn


class Listed:
    """A collector of families made beforehand."""

    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self) -> list:
        return self.families


def ours(spec: list) -> list[Family]:
    made = []
    for kind, name, documentation, labels, samples in spec:
        if labels is None:
            made.append(Family(kind, name, documentation, value=samples[0][1]))
            continue
        family = Family(kind, name, documentation, labels=labels)
        for values, value in samples:
            family.add_metric(values, value)
        made.append(family)
    return made


def prometheus_clients(spec: list) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    made = []
    for kind, name, documentation, labels, samples in spec:
        maker = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
        if labels is None:
            made.append(maker(name, documentation, value=samples[0][1]))
            continue
        family = maker(name, documentation, labels=labels)
        for values, value in samples:
            family.add_metric(values, value)
        made.append(family)
    registry.register(Listed(made))
    return registry


@given(specs())
def test_the_text_is_prometheus_clients_byte_for_byte(spec: list) -> None:
    assert render(Listed(ours(spec))) == generate_latest(prometheus_clients(spec))


@given(specs())
def test_prometheus_clients_parser_reads_back_what_was_written(spec: list) -> None:
    parsed = list(text_string_to_metric_families(render(Listed(ours(spec))).decode()))
    assert [(f.name, f.type, f.documentation) for f in parsed] == \
        [(name.removesuffix("_total") if kind == "counter" else name, kind, documentation)
         for kind, name, documentation, _, _ in spec]
    for family, (kind, name, _, labels, samples) in zip(parsed, spec):
        sample_name = name.removesuffix("_total") + "_total" if kind == "counter" else name
        assert [(s.name, s.labels) for s in family.samples] == \
            [(sample_name, dict(zip(labels or (), values))) for values, _ in samples]
        for read, (_, value) in zip(family.samples, samples):
            assert read.value == value or math.isnan(read.value) and math.isnan(value)


def test_escaping_and_numbers_as_the_format_spells_them() -> None:
    family = gauge("x", 'a "quoted" back\\slash\nand a line', labels=["v"])
    family.add_metric(['say "hi"\\\n'], 12345678.0)
    family.add_metric(["big"], 1e22)
    family.add_metric(["inf"], float("inf"))
    family.add_metric(["small"], -0.5)
    stamped = counter("c_total", "", labels=[])
    stamped.add_metric([], 3)
    stamped.add_metric([], 4, timestamp=1.5)
    assert render(Listed([family, stamped])).decode() == (
        '# HELP x a "quoted" back\\\\slash\\nand a line\n# TYPE x gauge\n'
        'x{v="say \\"hi\\"\\\\\\n"} 1.2345678e+07\nx{v="big"} 1e+22\nx{v="inf"} +Inf\nx{v="small"} -0.5\n'
        "# HELP c_total \n# TYPE c_total counter\nc_total 3.0\nc_total 4.0 1500\n")


@pytest.mark.parametrize(("make", "message"), [
    (lambda: gauge("2x", ""), "not a valid metric or label name"),
    (lambda: gauge("x", "", labels=["a-b"]), "not a valid metric or label name"),
    (lambda: gauge("x", "", value=1, labels=["a"]), "a value or labels, not both"),
    (lambda: gauge("x", "", labels=["a"]).add_metric(["1", "2"], 1), "2 label values for labels"),
    (lambda: Family("summary", "x", ""), "metric type 'summary'"),
])
def test_a_family_that_could_not_be_written_is_refused(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_the_agents_and_the_fleets_metrics_are_what_prometheus_client_wrote_for_them() -> None:
    """The families themselves, written both ways (prometheus_client reads their name, type,
    documentation and samples as it reads its own)."""
    counters = Counters()
    counters.count("refused", "403")
    counters.group(3)
    facts = {"devices": [("host", True, False, 2), ("toaster", False, True, 1)], "by_entry": {"tiktok": 1},
             "oldest": {"tiktok": 50.0}, "by_group": {'grp "1"\\': 1}, "serials": {7: 2}, "drift": 1}
    for collector in (SnapshotCollector(snapshot, lambda: NOW), SnapshotCollector(Snapshot, lambda: NOW),
                      Listed(fleet_families(facts, counters, 100.0, 7))):
        text = render(collector)
        assert text == generate_latest(collector)
        assert {f.name for f in text_string_to_metric_families(text.decode())} == {f.name for f in collector.collect()}
