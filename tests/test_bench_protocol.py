"""The timing protocol against a fake engine that, like ONNX Runtime's and OpenVINO's worker pools, keeps
a thread spinning after each call: interleaved timing ranks the candidates wrong, the protocol right."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from edge_vsd.runtimes.timing import Protocol, time_candidates, time_interleaved


def _busy_cpu(ms: float) -> None:
    """Spend `ms` of this thread's CPU time (pure Python, so it needs the GIL the whole time)."""
    end = time.thread_time() + ms / 1e3
    while time.thread_time() < end:
        pass


class FakeEngine:
    """`work_ms` of CPU per call; afterwards its `workers` threads spin for `spin_ms` of wall time, taking
    the interpreter from whoever runs next. Its own next call stops them first (as a pool would).
    `disturbed` counts this engine's calls that started while another engine's workers were spinning."""

    engines: list[FakeEngine] = []

    def __init__(self, work_ms: float, spin_ms: float = 0.0, workers: int = 3) -> None:
        self.work_ms, self.spin_ms = work_ms, spin_ms
        self.disturbed = 0
        FakeEngine.engines.append(self)
        self._stop = threading.Event()
        self._go = [threading.Event() for _ in range(workers if spin_ms else 0)]
        self._idle = [threading.Event() for _ in self._go]
        self._closed = False
        for go, idle in zip(self._go, self._idle, strict=True):
            idle.set()
            threading.Thread(target=self._worker, args=(go, idle), daemon=True).start()

    def _worker(self, go: threading.Event, idle: threading.Event) -> None:
        while True:
            go.wait()
            go.clear()
            if self._closed:
                return
            end = time.perf_counter() + self.spin_ms / 1e3
            while time.perf_counter() < end and not self._stop.is_set():
                pass
            idle.set()

    def park(self) -> None:
        """Nothing to do: the protocol's pause outlasts the spin (what a real engine's pool does too)."""

    def spinning(self) -> bool:
        return not all(idle.is_set() for idle in self._idle)

    def __call__(self) -> None:
        self.disturbed += any(e.spinning() for e in FakeEngine.engines if e is not self)
        self._stop.set()
        for idle in self._idle:
            idle.wait()
        self._stop.clear()
        _busy_cpu(self.work_ms)
        for go, idle in zip(self._go, self._idle, strict=True):
            idle.clear()
            go.set()

    def close(self) -> None:
        FakeEngine.engines.remove(self)
        self._closed = True
        self._stop.set()
        for go in self._go:
            go.set()


@pytest.fixture
def long_switch_interval():
    """A short GIL switch interval: the spinning worker gets the interpreter as soon as it wants it, as a
    spinning thread gets a core."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    yield
    sys.setswitchinterval(old)


def test_protocol_ranks_a_spinning_engine_right(long_switch_interval):
    # 3 spinning workers leave the engine called next about a quarter of the interpreter.
    fast, spinner = FakeEngine(work_ms=10.0), FakeEngine(work_ms=20.0, spin_ms=150.0)
    runners = {"spinner": spinner, "fast": fast}  # "fast" runs right after the spinner when interleaved
    try:
        time_interleaved(runners, iters=9)
        unfair_disturbed = fast.disturbed
        fast.disturbed = 0
        fair = time_candidates(runners, Protocol(warmup=2, iters=9, rounds=3, park_s=0.3))
    finally:
        spinner.close()
        fast.close()
    # The fake bites: interleaved, nearly every call of the fast engine starts with the spinner's workers
    # running; with the protocol, none does (the spinner is parked before every block).
    assert unfair_disturbed >= 9, unfair_disturbed
    assert fast.disturbed == 0
    assert fair["fast"].median_ms < fair["spinner"].median_ms, {k: v.record() for k, v in fair.items()}
    assert all(len(t.round_ms) == 3 and len(t.times_ms) == 27 for t in fair.values())


def test_rounds_rotate_the_order_and_every_block_is_parked():
    events: list[str] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        def __call__(self) -> None:
            if not events or events[-1] != self.name:
                events.append(self.name)

        def park(self) -> None:
            events.append(f"park-{self.name}")

    runners = {n: Recorder(n) for n in "abc"}
    blocks: list[tuple[str, int]] = []
    time_candidates(
        runners, Protocol(warmup=1, iters=2, rounds=3, park_s=0.0), lambda n, r, ms: blocks.append((n, r))
    )
    order = [n for n, _ in blocks]
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    # before each of the 9 blocks every runner was parked
    assert sum(e.startswith("park-") for e in events) == 9 * 3
    assert [e for e in events if not e.startswith("park-")] == order


def test_invalid_protocol_is_refused():
    with pytest.raises(ValueError, match="protocol"):
        time_candidates({"a": lambda: None}, Protocol(rounds=0))


def _row(
    name: str,
    precision: str,
    p50: float | None,
    status: str = "ok",
    cos: float | None = 0.999,
    rounds: list[float] | None = None,
) -> dict:
    model = {"arch": "vit_tiny", "patch_size": 16, "embed_dim": 192, "image_size": [112, 112]}
    return {
        "name": name,
        "precision": precision,
        "status": status,
        "backend": "onnxruntime-cpu",
        "model": model,
        "latency": None if p50 is None else {"p50_ms": p50, "round_ms": rounds or [p50]},
        "accuracy": {"cls_cosine": cos},
        "notes": [],
    }


def test_bench_names_the_artifact_to_ship_and_flags_slow_int8():
    from edge_vsd.benchmarks import verdicts

    rows = [
        _row("cpu-fp32", "fp32", 6.5),
        _row("cpu-int8", "int8", 27.1),
        _row("fast-but-wrong", "int8", 2.0, status="fails-gate", cos=0.9),
        _row("broken", "int8", None, status="failed"),
    ]
    ship = verdicts.apply(rows, has_reference=True)
    assert ship["name"] == "cpu-fp32" and ship["p50_ms"] == 6.5
    assert rows[1]["notes"] == [
        "INT8 slower than fp32 sibling cpu-fp32 (27.10 vs 6.50 ms): do not ship it on this CPU"
    ]
    assert rows[0]["notes"] == [] and rows[2]["notes"] == []
    # a faster INT8 is shipped and not flagged; another model's fp32 is no sibling
    rows = [_row("cpu-fp32", "fp32", 6.5), _row("cpu-int8", "int8", 4.0), _row("other", "fp32", 1.0)]
    rows[2]["model"] = dict(rows[2]["model"], arch="vit_small")
    assert verdicts.apply(rows, has_reference=True)["name"] == "other"
    assert rows[1]["notes"] == []
    assert "Ship: none" in verdicts.ship_line({"ship": verdicts.ship([rows[0] | {"status": "failed"}], True)})


def test_bench_calls_overlapping_rounds_too_close():
    """The quickstart's tune and bench disagreed a minute apart on rounds 13-61% apart: bench must not say
    "do not ship" or name a clear winner on rounds that overlap, and must still do so when they do not."""
    from edge_vsd.benchmarks import verdicts

    fp32 = _row("cpu-fp32", "fp32", 6.39, rounds=[5.9, 6.39, 9.8])
    int8 = _row("cpu-int8", "int8", 6.93, rounds=[6.6, 6.93, 7.48])
    ship = verdicts.apply([fp32, int8], has_reference=True)
    assert int8["notes"] == [
        "INT8 slower at p50 than fp32 sibling cpu-fp32 (6.93 vs 6.39 ms), but their rounds overlap: "
        "too close to call; re-run bench on the idle target"
    ]
    assert ship["name"] == "cpu-fp32" and ship["too_close"] == ["cpu-int8"]
    assert ship["why"].endswith("; within round noise of cpu-int8: too close to call")
    # rounds apart: the verdict is firm and nothing is too close
    fp32 = _row("cpu-fp32", "fp32", 6.1, rounds=[6.0, 6.1, 6.2])
    int8 = _row("cpu-int8", "int8", 8.1, rounds=[8.0, 8.1, 8.3])
    ship = verdicts.apply([fp32, int8], has_reference=True)
    assert int8["notes"][0].endswith("do not ship it on this CPU")
    assert ship["too_close"] == [] and "too close" not in ship["why"]


def test_bench_times_with_the_protocol_and_reports_engine_and_ship(tmp_path, capsys):
    import json

    from edge_vsd.runtimes.tune import tune
    from toy_artifact import make_toy_artifact

    from edge_vsd.cli import main

    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install edge-vsd[openvino])")
    a = make_toy_artifact(tmp_path / "a")
    b = make_toy_artifact(tmp_path / "b")
    rec = tune(b, protocol=Protocol(warmup=1, iters=2, rounds=1, park_s=0.0))
    args = ["--iters", "4", "--rounds", "2", "--warmup", "1", "--frames", "4", "--corr-pairs", "2"]
    assert main(["bench", str(a), str(b), "--report", str(tmp_path / "r"), *args]) == 0
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    rows = {r["name"]: r for r in results["artifacts"]}
    assert rows["b"]["backend"].endswith("/" + rec["chosen"])  # which engine and graph ran
    for row in rows.values():
        lat = row["latency"]
        assert len(lat["round_ms"]) == 2 and len(lat["times_ms"]) == 4 and lat["protocol"]["rounds"] == 2
    fastest = min(rows.values(), key=lambda r: r["latency"]["p50_ms"])
    assert results["ship"]["name"] == fastest["name"] and f"Ship: {fastest['name']}" in out
