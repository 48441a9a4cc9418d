"""`edge-vsd bench`: latency + fidelity of artifacts, Markdown/HTML/JSON report; `--compare OLD NEW`
for CI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_vsd.runtimes.backend import BACKEND_CHOICES
from edge_vsd.runtimes.errors import RuntimeInputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of `edge-vsd bench`."""
    p.add_argument("artifacts", nargs="*", metavar="ARTIFACT", help="artifact folders (with manifest.json)")
    p.add_argument(
        "--reference",
        metavar="ARTIFACT_OR_CKPT",
        help="fidelity reference: an artifact folder or a .pt/.pth checkpoint (default: the fp32 artifact)",
    )
    p.add_argument(
        "--data",
        metavar="VIDEO_OR_IMAGE_DIR",
        help="frames for latency and accuracy (default: synthetic frames)",
    )
    p.add_argument(
        "--report",
        metavar="DIR",
        default="bench-report",
        help="report folder: results.json, report.md, report.html, PNG plots (default: %(default)s)",
    )
    p.add_argument("--force", action="store_true", help="replace the report already in --report")
    p.add_argument(
        "--warmup", type=int, default=10, help="untimed calls before timing (default: %(default)s)"
    )
    p.add_argument(
        "--iters",
        type=int,
        default=48,
        help="timed calls per artifact, split over --rounds blocks (default: %(default)s)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="timing blocks per artifact; rounds rotate the order, the median of rounds is kept "
        "(default: %(default)s)",
    )
    p.add_argument("--threads", type=int, help="CPU threads for ONNX Runtime / OpenVINO (default: theirs)")
    p.add_argument("--batch", type=int, default=1, help="frames per timed call (default: %(default)s)")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto", help="engine to run artifacts on")
    p.add_argument(
        "--frames", type=int, default=32, help="frames taken from --data for accuracy (default: %(default)s)"
    )
    p.add_argument(
        "--corr-pairs",
        type=int,
        default=16,
        help="homography pairs for correspondence (default: %(default)s)",
    )
    p.add_argument(
        "--homography-strength",
        type=float,
        default=0.12,
        help="corner displacement of the random homographies, share of image size (default: %(default)s)",
    )
    p.add_argument(
        "--seg-data", metavar="DIR", help="ADE20K-layout folder (images/, annotations/) for a linear probe"
    )
    p.add_argument(
        "--seg-epochs", type=int, default=30, help="epochs of the linear probe (default: %(default)s)"
    )
    p.add_argument("--min-cls-cosine", type=float, default=0.99, help="fidelity gate (default: %(default)s)")
    p.add_argument(
        "--min-patch-cosine", type=float, default=0.99, help="fidelity gate (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for synthetic frames, homographies, probe split")
    p.add_argument(
        "--peers",
        metavar="CKPT",
        help="compare ARTIFACT (the tuned cpu INT8 export of CKPT) with PyTorch eager, ONNX Runtime fp32 "
        "and dynamic INT8, OpenVINO fp32 and NNCF-default INT8, same frame and threads; writes peers.json, "
        "peers.md in --report (frames: --data video, default opencv-doc's vtest.avi)",
    )
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("OLD", "NEW"),
        help="compare two results.json files instead of benchmarking; exit 1 on a regression",
    )
    p.add_argument(
        "--max-slowdown", type=float, default=1.10, help="--compare: allowed p50 ratio (default: %(default)s)"
    )
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=0.005,
        help="--compare: allowed absolute accuracy drop (default: %(default)s)",
    )


def _check_args(args: argparse.Namespace) -> None:
    for flag in ("warmup", "threads", "batch", "iters", "rounds", "frames", "corr_pairs", "seg_epochs"):
        value = getattr(args, flag)
        low = 0 if flag == "warmup" else 1
        if value is not None and value < low:
            raise RuntimeInputError(f"--{flag.replace('_', '-')} must be >= {low}, got {value}")
    if not 0 <= args.homography_strength < 0.5:
        raise RuntimeInputError(f"--homography-strength must be in [0, 0.5), got {args.homography_strength}")


def run(args: argparse.Namespace) -> int:
    """Benchmark (or compare); 1 when an artifact failed or a comparison regressed."""
    if args.compare:
        if args.artifacts:
            raise RuntimeInputError("--compare takes two results.json files; do not pass artifacts with it")
        from edge_vsd.benchmarks.compare import run_compare

        return run_compare(args.compare[0], args.compare[1], args.max_slowdown, args.max_accuracy_drop)
    if not args.artifacts:
        raise RuntimeInputError("no artifacts given (edge-vsd bench ARTIFACT [ARTIFACT ...])")
    _check_args(args)
    if args.peers:
        from edge_vsd.benchmarks.peers import run_cli

        return run_cli(
            args.peers,
            args.artifacts,
            args.data,
            args.threads,
            args.report,
            args.rounds,
            args.iters,
            args.warmup,
        )
    from edge_vsd.benchmarks import report, runner
    from edge_vsd.benchmarks.data import load_frames
    from edge_vsd.benchmarks.verdicts import ship_line

    # Every input is checked before any work starts: a wrong path costs seconds, not a benchmark run.
    report.check_report_dir(args.report, args.force)
    artifacts = [runner.check_artifact_dir(a) for a in args.artifacts]
    reference = runner.resolve_reference(args.reference, artifacts)
    if args.data is not None and not Path(args.data).exists():
        raise RuntimeInputError(f"{args.data}: no such file or folder (--data)")
    seg_data = None
    if args.seg_data:
        from edge_vsd.benchmarks.seg_probe import load_seg_data

        seg_data = load_seg_data(args.seg_data)
    frames, data_info = load_frames(args.data, args.frames, args.seed)
    settings = runner.Settings(
        warmup=args.warmup,
        iters=args.iters,
        rounds=args.rounds,
        threads=args.threads,
        batch=args.batch,
        backend=None if args.backend == "auto" else args.backend,
        frames=args.frames,
        corr_pairs=args.corr_pairs,
        homography_strength=args.homography_strength,
        seg_epochs=args.seg_epochs,
        min_cls_cosine=args.min_cls_cosine,
        min_patch_cosine=args.min_patch_cosine,
        seed=args.seed,
    )
    results = runner.run_benchmark(artifacts, settings, frames, data_info, reference, seg_data)
    written = report.write_report(results, args.report)
    print(report.markdown_table(results), end="")
    print(ship_line(results))
    print(
        f"report: {written['report.html']} (results.json, report.md, plots in {Path(args.report)})",
        file=sys.stderr,
    )
    failed = [a["name"] for a in results["artifacts"] if a["status"] == "failed"]
    if results["reference"].get("error") and reference.index is None:
        failed.append(f"reference {results['reference']['name']}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
