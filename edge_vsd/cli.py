"""`edge-vsd` command line: a thin dispatcher that imports only the stage it runs."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType
from typing import NoReturn

# command -> (module with add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": (
        "edge_vsd.quickstart",
        "synthetic (or your) video -> train -> export -> bench, one command",
    ),
    "make-data": (
        "edge_vsd.data.make_data",
        "labelled synthetic data: DAVIS-layout masks, ADE-layout classes, training videos",
    ),
    "prepare": ("edge_vsd.data.prepare", "decode videos once into a memory-mapped uint8 frame cache"),
    "train": ("edge_vsd.train_cli", "train a ViT encoder with video self-distillation"),
    "bench-train": ("edge_vsd.bench_train", "measure training throughput (pairs/s, FLOP/s vs matmul)"),
    "export": ("edge_vsd.export.cli", "checkpoint -> ONNX / INT8 / TensorRT-ready artifact folder"),
    "lint-trt": (
        "edge_vsd.export.cli_lint",
        "check a Q/DQ ONNX file against TensorRT's explicit-quantization rules",
    ),
    "register-engine": (
        "edge_vsd.runtimes.register_engine",
        "add an engine built on the board to its artifact",
    ),
    "doctor": (
        "edge_vsd.runtimes.doctor",
        "self-check a board: TensorRT/CUDA versions, GPU, power mode, trtexec, engine",
    ),
    "tune": (
        "edge_vsd.runtimes.tune",
        "time a cpu artifact's candidate engines on this machine, record the fastest",
    ),
    "extract": ("edge_vsd.runtimes.cli", "stream a video/camera/folder through an artifact, save features"),
    "eval": (
        "edge_vsd.benchmarks.evaluate",
        "representation quality: DAVIS J&F label propagation, linear + kNN seg probe, region probe",
    ),
    "ablate": (
        "edge_vsd.benchmarks.ablate",
        "VSD at several deltas vs DINO and the starting weights, same budget, one table + plots",
    ),
    "bench": ("edge_vsd.benchmarks.cli", "latency + fidelity of artifacts, Markdown/HTML/JSON report"),
}
_WIDTH = max(map(len, COMMANDS))  # the help epilog's name column


def _error_types() -> tuple[type[BaseException], ...]:
    from edge_vsd.errors import InputError

    types: list[type[BaseException]] = [InputError]
    try:
        from edge_vsd.runtimes.errors import RuntimeInputError

        types.append(RuntimeInputError)
    except ImportError:
        pass
    return tuple(types)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (`PROG: error: ...`) with exit status 2, like ours."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: object) -> str:
    """Any message on one line: newlines and runs of spaces folded into single spaces."""
    return " ".join(str(text).split())


def report_error(name: str, exc: BaseException, expected: bool) -> int:
    """Print the one-line error for `exc` raised by command `name`; return the exit status (2 or 1)."""
    if expected:
        print(f"edge-vsd {name}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    detail = one_line(exc) or "(no message)"
    print(
        f"edge-vsd {name}: error: unexpected {type(exc).__name__}: {detail} "
        f"(rerun with --debug for the traceback)",
        file=sys.stderr,
    )
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="edge-vsd",
        description="Train a ViT on unlabeled video (video self-distillation), export it, run it on a robot.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {n:<{_WIDTH}} {h}" for n, (_, h) in COMMANDS.items())
        + "\n\n`edge-vsd COMMAND --help` for a command's flags.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    parser.add_argument("command", nargs="?", choices=list(COMMANDS), metavar="COMMAND")
    return parser


def command_parser(name: str, module: ModuleType | None = None) -> argparse.ArgumentParser:
    """The parser of `edge-vsd NAME`, as main() runs it (imports the command's module unless given)."""
    module_name, help_text = COMMANDS[name]
    sub = OneLineParser(prog=f"edge-vsd {name}", description=help_text)
    (module or importlib.import_module(module_name)).add_arguments(sub)
    return sub


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    top = build_parser()
    cmd_index = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if cmd_index is None:
        args = top.parse_args(argv)
        if args.version:
            from edge_vsd import __version__

            print(__version__)
            return 0
        top.print_help()
        return 0
    name = argv[cmd_index]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r} (choose from {', '.join(COMMANDS)})")
    # our own messages (skipped videos, stage notes) at INFO; third-party libraries only from WARNING
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("edge_vsd").setLevel(logging.INFO)
    try:
        module = importlib.import_module(COMMANDS[name][0])
    except ModuleNotFoundError as exc:
        if debug:
            raise
        extra = "train,export" if name in ("train", "export", "quickstart", "bench-train") else "all"
        print(
            f"edge-vsd {name}: error: needs the Python package {exc.name!r}, which is not installed "
            f"(pip install 'edge-vsd[{extra}]')",
            file=sys.stderr,
        )
        return 2
    args = command_parser(name, module).parse_args(argv[cmd_index + 1 :])
    args.debug = debug
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt as exc:  # training's `Stopped` says what it saved and carries 128 + signal
        print(one_line(exc) or "interrupted", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    except Exception as exc:  # noqa: BLE001 - the CLI's one error path: one line, never a traceback
        if debug:
            raise
        return report_error(name, exc, isinstance(exc, _error_types()))


if __name__ == "__main__":
    sys.exit(main())
