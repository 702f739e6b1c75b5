"""Counters and histograms in Prometheus' text exposition format (no client library needed)."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

#: Latency buckets in seconds: 1 ms .. 30 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    body = ",".join(f'{n}="{_escape(str(v))}"' for n, v in zip(names, values))
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()):
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, by: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + by

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for labels, value in sorted(self._values.items()):
                lines.append(f"{self.name}{_labels(self.label_names, labels)} {_number(value)}")
        return lines


class Gauge(Counter):
    def set(self, *labels: str, value: float) -> None:
        with self._lock:
            self._values[labels] = float(value)

    def replace(self, *labels: str, value: float) -> None:
        """Drop every series, then set this one (an info gauge: one current value)."""
        with self._lock:
            self._values = {labels: float(value)}

    def render(self) -> list[str]:
        lines = super().render()
        lines[1] = f"# TYPE {self.name} gauge"
        return lines


class Histogram:
    def __init__(self, name: str, help_text: str, labels: Sequence[str] = (), buckets=LATENCY_BUCKETS):
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self.buckets = tuple(buckets)
        self._series: dict[tuple[str, ...], list] = {}  # labels -> [bucket counts..., sum, count]
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            series = self._series.setdefault(labels, [0] * len(self.buckets) + [0.0, 0])
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[i] += 1
            series[-2] += value
            series[-1] += 1

    def totals(self, *labels: str) -> tuple[float, int]:
        """(sum, count) of one series."""
        with self._lock:
            series = self._series.get(labels)
            return (series[-2], series[-1]) if series else (0.0, 0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for labels, series in sorted(self._series.items()):
                for bound, count in zip(self.buckets, series):
                    le = _labels((*self.label_names, "le"), (*labels, _number(bound)))
                    lines.append(f"{self.name}_bucket{le} {count}")
                le = _labels((*self.label_names, "le"), (*labels, "+Inf"))
                lines.append(f"{self.name}_bucket{le} {series[-1]}")
                lines.append(f"{self.name}_sum{_labels(self.label_names, labels)} {_number(series[-2])}")
                lines.append(f"{self.name}_count{_labels(self.label_names, labels)} {series[-1]}")
        return lines


class Metrics:
    """Everything ``GET /metrics`` shows."""

    def __init__(self):
        self.requests = Counter(
            "mmalign_http_requests_total", "HTTP requests by route, method and status.", ("route", "method", "status")
        )
        self.request_seconds = Histogram(
            "mmalign_http_request_seconds", "HTTP request latency by route.", ("route", "method")
        )
        self.stage_seconds = Histogram(
            "mmalign_stage_seconds",
            "Time per stage of a query: decode (uploaded media), queue (waiting for a batch), encode (one "
            "batch through encoder + student), query (the store), by modality where it applies.",
            ("stage", "modality"),
        )
        self.batch_size = Histogram(
            "mmalign_batch_size", "Queries encoded together in one batch, by modality.", ("modality",), BATCH_BUCKETS
        )
        self.batch_failures = Counter(
            "mmalign_batch_retries_total",
            "Batches that failed as a whole and were retried one query at a time, by modality.",
            ("modality",),
        )
        self.reloads = Counter("mmalign_reloads_total", "Bundle reloads after the alias moved, by result.", ("result",))
        self.bundle = Gauge("mmalign_bundle_info", "The bundle being served (value 1).", ("collection", "bundle_id"))

    def mean_batch_size(self, modality: str) -> float:
        total, count = self.batch_size.totals(modality)
        return total / count if count else 0.0

    def render(self) -> str:
        parts = [self.requests, self.request_seconds, self.stage_seconds, self.batch_size]
        parts += [self.batch_failures, self.reloads, self.bundle]
        return "\n".join(line for metric in parts for line in metric.render()) + "\n"
