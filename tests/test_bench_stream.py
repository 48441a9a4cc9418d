"""The streaming benchmark: end-to-end and encoder-only FPS as medians of alternating rounds."""

from __future__ import annotations

from edge_vsd.runtimes.bench_stream import run_benchmark
from toy_artifact import make_toy_artifact

from edge_vsd.data.synthetic import write_video


def test_stream_benchmark_times_both_paths_in_rounds(tmp_path):
    art = make_toy_artifact(tmp_path / "toy", image_size=(32, 32))
    video = write_video(tmp_path / "v.avi", n_frames=12, height=48, width=64, fps=25.0)
    r = run_benchmark(art, video, frames=0, threads=1, probe_frames=12, rounds=3, park_s=0.0)
    assert r["rounds"] == 3 and r["end_to_end_frames"] == 12
    by_round = r["end_to_end_over_encoder_only_by_round"]
    assert len(by_round) == 3 and all(x > 0 for x in by_round)
    batch = r["stream_batch"]
    assert r["end_to_end_over_encoder_only"] == r["end_to_end_fps"] / r[f"encoder_only_fps_batch{batch}"]
    assert "memory" not in r  # frames=0 skips the memory test
