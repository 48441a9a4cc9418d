"""Benchmarks: latency, feature fidelity, downstream probes and Markdown/HTML/JSON reports (torch-free)."""

from __future__ import annotations

SCHEMA = "edge-vsd-bench"
SCHEMA_VERSION = 1
