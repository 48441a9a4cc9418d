"""`edge-vsd lint-trt FILE.onnx`: TensorRT explicit-quantization rules, one line per broken rule."""

from __future__ import annotations

import argparse

from edge_vsd.export.trt_lint import errors, lint_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", nargs="+", help="Q/DQ ONNX file(s) or artifact folder(s) to check")
    parser.add_argument("--max-lines", type=int, default=50, help="findings printed per file (default 50)")


def run(args: argparse.Namespace) -> int:
    """0 when every file is clean, 1 when any rule is broken (2 for unreadable files, via InputError)."""
    failed = False
    for path in args.onnx:
        findings = lint_file(path)
        for f in findings[: args.max_lines]:
            print(f"{path}: {f}")
        if len(findings) > args.max_lines:
            print(f"{path}: ... {len(findings) - args.max_lines} more")
        n_err = len(errors(findings))
        failed |= n_err > 0
        print(f"{path}: {'FAIL' if n_err else 'OK'} ({n_err} errors, {len(findings) - n_err} warnings)")
    return 1 if failed else 0
