"""The Prometheus text exposition format (version 0.0.4), written by appban itself.

Why not prometheus_client: importing any part of it runs its package `__init__`, which imports
its own HTTP server and client (http.server, urllib.request, ssl, the email package, gzip) —
~7.5 MiB the agent's service would carry from its first scrape on, over the memory target
(docs/performance.md). What appban needs of it is small: gauges and counters from a pure
function of its state, rendered on each scrape, with no process metrics mixed in. The fleet
server writes its /metrics with this module too, so there is one writer of the format.

The text is what prometheus_client's `generate_latest` writes for the same families, byte for
byte (tests/unit/test_exposition.py compares them, and parses it with prometheus_client's
parser): `# HELP` and `# TYPE` lines per family, a counter's family name without `_total` and
its samples (and HELP/TYPE lines) with it, labels sorted by name, values as Go prints floats.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, NamedTuple, Protocol, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("gauge", "counter")


class Sample(NamedTuple):
    """One line of a family: the sample's name (a counter's ends in `_total`), labels, value,
    and an optional timestamp in seconds (appban's have none: Prometheus stamps the scrape)."""

    name: str
    labels: dict[str, str]
    value: float
    timestamp: float | None = None


class Family:
    """A metric family as prometheus_client's GaugeMetricFamily and CounterMetricFamily make
    one: either a single `value` without labels, or `labels` names and one `add_metric` per
    combination of their values."""

    def __init__(self, kind: str, name: str, documentation: str, value: float | None = None,
                 labels: Sequence[str] | None = None) -> None:
        if kind not in TYPES:
            raise ValueError(f"metric type {kind!r}: expected one of {TYPES}")
        if kind == "counter" and name.endswith("_total"):
            name = name[:-len("_total")]
        if not NAME.match(name) or not all(LABEL_NAME.match(label) for label in labels or ()):
            raise ValueError(f"metric {name!r}: not a valid metric or label name")
        if value is not None and labels is not None:
            raise ValueError(f"metric {name!r}: a value or labels, not both")
        self.name = name
        self.type = kind
        self.documentation = documentation
        self.samples: list[Sample] = []
        self._labels = tuple(labels or ())
        self._sample_name = name + "_total" if kind == "counter" else name
        if value is not None:
            self.add_metric((), value)

    def add_metric(self, values: Sequence[str], value: float, timestamp: float | None = None) -> None:
        """Add the sample of the label values `values` (in the order of the family's labels)."""
        if len(values) != len(self._labels):
            raise ValueError(f"metric {self.name!r}: {len(values)} label values for labels {self._labels}")
        self.samples.append(Sample(self._sample_name, dict(zip(self._labels, values)), float(value), timestamp))


def gauge(name: str, documentation: str, value: float | None = None, labels: Sequence[str] | None = None) -> Family:
    """Return a gauge family (prometheus_client's GaugeMetricFamily)."""
    return Family("gauge", name, documentation, value, labels)


def counter(name: str, documentation: str, value: float | None = None, labels: Sequence[str] | None = None) -> Family:
    """Return a counter family (prometheus_client's CounterMetricFamily): `name` is the family's,
    its samples are called `name_total`."""
    return Family("counter", name, documentation, value, labels)


class Collector(Protocol):
    """What renders on each scrape, as in prometheus_client: families made when asked."""

    def collect(self) -> Iterable[Family]: ...


def render(collector: Collector) -> bytes:
    """Given a collector, return its families as the text format (UTF-8)."""
    out: list[str] = []
    for family in collector.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        out.append(f"# HELP {name} {escape_help(family.documentation)}\n# TYPE {name} {family.type}\n")
        out.extend(sample_line(sample) for sample in family.samples)
    return "".join(out).encode()


def sample_line(sample: Sample) -> str:
    """Return one sample's line: name, `{label="value",...}` sorted by label name, the value, and
    the timestamp in milliseconds if it has one."""
    labels = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(sample.labels.items()))
    stamp = "" if sample.timestamp is None else f" {int(float(sample.timestamp) * 1000):d}"
    return f"{sample.name}{'{' + labels + '}' if labels else ''} {go_float(sample.value)}{stamp}\n"


def escape_help(text: str) -> str:
    """HELP text escapes a backslash and a line feed (the format's rule; quotes stay)."""
    return text.replace("\\", r"\\").replace("\n", r"\n")


def escape_label_value(text: str) -> str:
    """A label value escapes a backslash, a double quote and a line feed."""
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def go_float(value: float) -> str:
    """Return `value` as Prometheus (and prometheus_client) write it: `+Inf`, `-Inf`, `NaN`, or
    Python's shortest repr, switching to an exponent where Go's formatting would (from 1e7)."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text
