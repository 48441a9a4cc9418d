"""`edge-vsd ablate`: VSD at several deltas beside the DINO baseline and the starting weights, trained with
the same frames, seed and step budget, then scored by `edge-vsd eval` into one table and two plots.

Resumable: a finished arm is skipped, an interrupted one resumes from its checkpoint. Every arm draws the
same anchor frames at every step (see `edge_vsd.data.pairs`), so the arms differ only in what they learn.
`--merge` unites ablations run apart with the same settings into one table, training nothing."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from edge_vsd.benchmarks.davis import PropagationSettings
from edge_vsd.benchmarks.evaluate import FLOOR_METRICS, EvalConfig, dig, load_inputs, run_eval
from edge_vsd.benchmarks.floors import FLOOR_SEEDS, mean_std
from edge_vsd.runtimes.atomic import write_bytes_atomic
from edge_vsd.runtimes.errors import RuntimeInputError

BASELINES = ("dino", "init")
ARM_METRICS = {k: FLOOR_METRICS[k] for k in ("JF", "J", "F", "miou", "knn", "region")}  # table columns


@dataclass
class AblateConfig:
    video: list[str]
    out: str
    deltas: list[float] = field(default_factory=lambda: [0, 5, 15, 30, 60])
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    delta_seconds: bool = False  # the deltas are seconds, converted with each video's fps
    steps: int = 300
    arch: str = "vit_tiny"
    img_size: int = 112
    batch_size: int = 32
    init: str | None = None
    seed: int = 0
    seeds: int = 1  # seeds seed, seed+1, ...: every arm trained once per seed, tables give mean ± std
    lr: float | None = None
    out_dim: int | None = None
    device: str = "cpu"
    workers: int = 0  # data-loading processes per arm (0 on small CPUs; several on a GPU machine)
    davis: str | None = None
    seg_data: str | None = None
    eval_size: int = 224  # short side of the DAVIS frames; DINO: 480 for models trained at 224
    seg_size: int | None = None  # probe short side (None: the images' own)
    radius: int = 3  # DINO's 12 patches of 8 px at 480 are 20% of the short side; 3 x 16 px at 224 the same
    max_frames: int = 50
    config: str | None = None  # JSON/TOML file of TrainConfig fields every arm trains with (the recipe)
    probe_splits: int = 1  # the seg probes' seeded holdout splits, averaged (eval --probe-splits)


@dataclass
class Arm:
    name: str
    method: str  # "vsd" | "dino" | "init"
    delta: float | None = None


def arms(cfg: AblateConfig) -> list[Arm]:
    unit = "s" if cfg.delta_seconds else ""
    out = [Arm(f"vsd-d{d:g}{unit}", "vsd", d) for d in cfg.deltas]
    return out + [Arm(b, b) for b in cfg.baselines]


def train_config(cfg: AblateConfig, arm: Arm, run_dir: Path):
    """The arm's TrainConfig: shared data, cache, seed, size, step budget and recipe (`config`); only the
    method/delta differ."""
    from edge_vsd.config import resolve_config

    values: dict[str, Any] = {
        "video": cfg.video,
        "out": str(run_dir),
        "cache": str(Path(cfg.out) / "frame_cache"),
        "method": arm.method,
        "steps": cfg.steps,
        "arch": cfg.arch,
        "img_size": cfg.img_size,
        "batch_size": cfg.batch_size,
        "init": cfg.init,
        "seed": cfg.seed,
        "lr": cfg.lr,
        "out_dim": cfg.out_dim,
        "device": cfg.device,
        "workers": cfg.workers,
        "save_every": max(10, cfg.steps // 10),
    }
    if arm.delta is not None:  # a VSD arm
        values["delta_seconds" if cfg.delta_seconds else "delta"] = (
            float(arm.delta) if cfg.delta_seconds else int(arm.delta)
        )
    return resolve_config(cfg.config, values)


def finished_steps(run_dir: Path) -> int:
    """Steps the arm's checkpoint holds (0 when none)."""
    from edge_vsd.checkpoint import load_checkpoint

    ckpt = run_dir / "checkpoint.pt"
    return int(load_checkpoint(ckpt)["step"]) if ckpt.exists() else 0


def init_weights(cfg: AblateConfig, run_dir: Path) -> Path:
    """The starting point every arm trains from: `--init`, or the seed's random ViT saved as a backbone."""
    if cfg.init:
        return Path(cfg.init)
    import io

    import torch

    from edge_vsd.model import build_vit

    path = run_dir / "backbone.pt"
    if not path.exists():
        torch.manual_seed(cfg.seed)  # what `train` draws first after seeding: the same random weights
        vit = build_vit(cfg.arch, cfg.img_size)
        buf = io.BytesIO()
        torch.save(vit.state_dict(), buf)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, buf.getvalue())
    return path


def arm_dir(cfg: AblateConfig, arm: Arm, first_seed: int) -> Path:
    """OUT/runs/ARM, or OUT/runs/ARM-sSEED for every seed but the first of a multi-seed ablation."""
    return Path(cfg.out) / "runs" / (arm.name if cfg.seed == first_seed else f"{arm.name}-s{cfg.seed}")


def run_arm(cfg: AblateConfig, arm: Arm, log, run_dir: Path | None = None) -> dict[str, Any]:
    """Train one arm (skipped when finished, resumed when interrupted); returns its model and timing."""
    run_dir = run_dir or Path(cfg.out) / "runs" / arm.name
    if arm.method == "init":
        return {"model": str(init_weights(cfg, run_dir)), "seconds": 0.0, "steps": 0}
    from edge_vsd.train import train

    tcfg = train_config(cfg, arm, run_dir)
    done = finished_steps(run_dir)
    timing_file = run_dir / "ablate.json"
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else {"seconds": 0.0}
    if done >= cfg.steps:
        log(f"{arm.name}: finished ({done} steps), skipped")
    else:
        log(f"{arm.name}: {'resuming at step ' + str(done) if done else 'training'} ({cfg.steps} steps)")
        evaluator = None
        if tcfg.eval_every:  # the recipe asks for in-training evaluation: each arm draws its curve
            from edge_vsd.benchmarks.train_eval import TrainingEval

            evaluator = TrainingEval(tcfg.eval_data or "", tcfg.img_size, tcfg.out)
        start = time.perf_counter()
        try:
            train(tcfg, resume=done > 0, evaluator=evaluator)
        finally:  # an interrupted session's time still counts
            timing["seconds"] += time.perf_counter() - start
            # a failed new run removes its folder: nothing to record, and the original error must surface
            if run_dir.is_dir():
                write_bytes_atomic(timing_file, (json.dumps(timing) + "\n").encode())
    rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines() if r.strip()]
    steps = [r for r in rows if "loss" in r]  # eval rows (--eval-every) carry no loss
    last = steps[-1] if steps else {}
    out = {
        "model": str(run_dir / "checkpoint.pt"),
        "seconds": timing["seconds"],
        "steps": cfg.steps,
        "final": {k: last.get(k) for k in ("loss", "loss_global", "loss_dense", "teacher_entropy")},
    }
    curve = [{"step": r["step"], **r["eval"]} for r in rows if "eval" in r]  # a recipe with eval_every
    return out | {"curve": curve} if curve else out


def summary_rows(cfg: AblateConfig, table: list[dict[str, Any]]) -> list[list[str]]:
    def n(v: Any, fmt: str = ".3f") -> str:
        return "-" if v is None else format(v, fmt)

    rows = []
    for r in table:
        delta = "-" if r["delta"] is None else f"{r['delta']:g}{'s' if cfg.delta_seconds else ''}"
        seconds = r.get("seconds")  # a multi-seed arm's sum over its seeds
        per_run = None if seconds is None else seconds / len(r.get("seeds") or [r])
        rows.append(
            [
                r["arm"],
                r["method"],
                delta,
                str(r["steps"]),
                *(_with_spread(r, key, n) for key in ARM_METRICS),
                final_loss_text(r),
                n(per_run, ".0f"),
            ]
        )
    return rows


def final_losses(row: dict[str, Any]) -> dict[str, Any]:
    """`mean_std` of the last step's loss over the seeds of an arm that recorded one (one run: its own)."""
    return mean_std([(r.get("final") or {}).get("loss") for r in row.get("seeds") or [row]])


def final_loss_text(row: dict[str, Any]) -> str:
    """The last step's loss as `mean ± std` (`-` where no seed recorded one): ablate's table and the docs'."""
    spread = final_losses(row)
    if spread["mean"] is None:
        return "-"
    return f"{spread['mean']:.3f}" + (f" ± {spread['std']:.3f}" if spread["n"] > 1 else "")


def _with_spread(row: dict[str, Any], key: str, n) -> str:
    """`mean ± std` for a row with a seed spread (the random-init floor), else the value."""
    sd = ((row.get("spread") or {}).get(key) or {}).get("std")
    return n(row.get(key)) + (f" ± {sd:.3f}" if sd is not None and row.get(key) is not None else "")


HEADER = [
    *("arm", "method", "Δ", "steps", "J&F", "J", "F", "seg mIoU", "kNN acc", "region bal. acc"),
    *("final loss", "train s"),
]


def plot_delta(cfg: AblateConfig, table: list[dict[str, Any]]) -> bytes:
    """The method's figure: accuracy against the prediction stride, baselines as horizontal lines."""
    from edge_vsd.benchmarks.plots import _png, plt

    metrics = [(k, label) for k, label in (("JF", "DAVIS J&F"), ("miou", "seg mIoU")) if _has(table, k)]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(5 * max(1, len(metrics)), 3.6), squeeze=False)
    vsd = sorted((r for r in table if r["method"] == "vsd"), key=lambda r: r["delta"])
    for ax, (key, label) in zip(axes[0], metrics):
        xs = [r["delta"] for r in vsd if r.get(key) is not None]
        ax.plot(xs, [r[key] for r in vsd if r.get(key) is not None], "o-", color="#1f618d", label="VSD")
        styles = ("--", ":", "-.", (0, (1, 1)), (0, (3, 1, 1, 1)))
        for r, style in zip((r for r in table if r["method"] != "vsd"), styles):
            if r.get(key) is not None:
                ax.axhline(r[key], linestyle=style, color="#7f8c8d", label=r["arm"])
        ax.set_xlabel(f"Δ ({'seconds' if cfg.delta_seconds else 'frames'})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{cfg.arch} @ {cfg.img_size} px, {cfg.steps} steps x batch {cfg.batch_size}", fontsize=10)
    return _png(fig)


def plot_baselines(table: list[dict[str, Any]]) -> bytes:
    """The method's table as bars: every arm on every metric."""
    from edge_vsd.benchmarks.plots import _png, plt

    metrics = [
        (k, label)
        for k, label in (("JF", "J&F"), ("miou", "mIoU"), ("knn", "kNN acc"), ("region", "region bal. acc"))
        if _has(table, k)
    ]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(table) * max(1, len(metrics))), 3.6))
    width = 0.8 / max(1, len(metrics))
    for m, (key, label) in enumerate(metrics):
        ax.bar(
            [i + m * width for i in range(len(table))],
            [r.get(key) or 0 for r in table],
            width,
            label=label,
        )
    ax.set_xticks([i + width * (len(metrics) - 1) / 2 for i in range(len(table))])
    ax.set_xticklabels([r["arm"] for r in table], rotation=20)
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_curves(table: list[dict[str, Any]]) -> bytes | None:
    """The arms' in-training evaluations (a recipe with `eval_every`): each metric of the teacher against
    the step, mean over seeds, one line per arm; None when no arm has them."""
    curves = {r["arm"]: [s["curve"] for s in r.get("seeds", [r]) if s.get("curve")] for r in table}
    curves = {arm: c for arm, c in curves.items() if c}
    if not curves:
        return None
    from edge_vsd.benchmarks.plots import _png, plt

    keys = sorted({k for runs in curves.values() for c in runs for row in c for k in row.get("teacher", {})})
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for arm, runs in curves.items():
            by_step: dict[int, list[float]] = {}
            for c in runs:
                for row in c:
                    if key in row.get("teacher", {}):
                        by_step.setdefault(row["step"], []).append(row["teacher"][key])
            steps = sorted(by_step)
            ax.plot(steps, [sum(by_step[s]) / len(by_step[s]) for s in steps], "o-", ms=3, label=arm)
        ax.set_xlabel("step")
        ax.set_ylabel(f"teacher {key}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def _has(table: list[dict[str, Any]], key: str) -> bool:
    return any(r.get(key) is not None for r in table)


def preflight(cfg: AblateConfig, plan: list[Arm]) -> None:
    """Before any arm trains: OUT writable, the labelled data's layout, the --init checkpoint, every arm's
    training settings, and every Δ against the videos' lengths (one-line errors naming the input)."""
    from edge_vsd.benchmarks.report import check_writable

    from edge_vsd.errors import InputError
    from edge_vsd.preflight import check_inputs, check_videos

    check_writable(cfg.out, "--out")
    load_inputs(EvalConfig(davis=cfg.davis, seg_data=cfg.seg_data, max_frames=cfg.max_frames))
    first = True
    for arm in plan:
        if arm.method == "init":
            continue
        tcfg = train_config(cfg, arm, Path(cfg.out) / "runs" / arm.name).validate()
        try:
            # as `train` checks each arm, but all of them before the first one spends minutes training
            check_inputs(tcfg) if first else check_videos(tcfg)
        except InputError as exc:
            raise RuntimeInputError(f"{exc} (arm {arm.name})") from None
        first = False


def ablate(cfg: AblateConfig, log=print) -> dict[str, Any]:
    """Train every arm, evaluate all of them, write ablation.{md,json} and the two plots into OUT."""
    out = Path(cfg.out)
    plan = arms(cfg)
    preflight(cfg, plan)
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    runs = [(arm, seed) for seed in seeds for arm in plan]
    trained = {}
    for i, (arm, seed) in enumerate(runs, 1):
        log(f"[{i}/{len(runs)}] {arm.name}" + (f", seed {seed}" if len(seeds) > 1 else ""))
        scfg = replace(cfg, seed=seed)
        trained[arm.name, seed] = run_arm(scfg, arm, log, arm_dir(scfg, arm, seeds[0]))
    log(f"[eval] {len(runs)} models")
    ecfg = EvalConfig(
        davis=cfg.davis,
        seg_data=cfg.seg_data,
        max_frames=cfg.max_frames,
        propagation=PropagationSettings(radius=cfg.radius, short_side=cfg.eval_size),
        seg_size=cfg.seg_size,
        floor_seeds=max(FLOOR_SEEDS, len(seeds)),
        probe_splits=cfg.probe_splits,
    )
    doc = run_eval([trained[a.name, s]["model"] for a, s in runs], ecfg, out / "eval", force=True, log=log)
    scores = {(a.name, s): res for (a, s), res in zip(runs, doc["models"])}
    table = []
    for arm in plan:
        per_seed = []
        for seed in seeds:
            res = scores[arm.name, seed]
            per_seed.append(
                {"seed": seed, **{k: v for k, v in trained[arm.name, seed].items() if k != "model"}}
                | {key: dig(res, path) for key, path in ARM_METRICS.items()}
            )
        row: dict[str, Any] = {"arm": arm.name, "method": arm.method, "delta": arm.delta}
        row["steps"], row["seconds"] = per_seed[0]["steps"], sum(r["seconds"] for r in per_seed)
        row["final"] = per_seed[0].get("final")
        spread = {key: mean_std([r[key] for r in per_seed]) for key in ARM_METRICS}
        row.update({key: v["mean"] for key, v in spread.items()})
        if len(seeds) > 1:
            row["spread"], row["seeds"] = spread, per_seed
        elif per_seed[0].get("curve"):
            row["curve"] = per_seed[0]["curve"]
        table.append(row)
    for res in doc["models"][len(runs) :]:  # the floors eval added: raw pixels, random inits, trivial
        d, s = res.get("davis") or {}, res.get("seg") or {}
        table.append(
            {
                "arm": res["name"],
                "method": "floor",
                "delta": None,
                "steps": 0,
                "JF": d.get("JF"),
                "J": d.get("J"),
                "F": d.get("F"),
                "miou": (s.get("linear") or {}).get("miou"),
                "knn": (s.get("knn") or {}).get("acc"),
                "region": (s.get("region") or {}).get("balanced_acc"),
                "spread": res.get("spread"),
            }
        )
    settings = asdict(cfg)
    settings["video"] = [Path(v).name for v in cfg.video]
    for key in ("davis", "seg_data", "init", "config"):
        settings[key] = Path(settings[key]).name if settings[key] else None
    if cfg.config:
        from edge_vsd.config import load_config_file

        settings["recipe"] = load_config_file(cfg.config)
    result = {"settings": settings, "arms": table, "eval_settings": doc["settings"]}
    result["markdown"] = write_report(cfg, result)
    return result


def write_report(cfg: AblateConfig, result: dict[str, Any]) -> str:
    """Write ablation.{json,md} and the plots into `cfg.out`; returns the table as markdown."""
    table, settings = result["arms"], result["settings"]
    md = "| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER) + "\n"
    md += "".join("| " + " | ".join(row) + " |\n" for row in summary_rows(cfg, table))
    last = cfg.seed + cfg.seeds - 1
    seed_text = f"seed {cfg.seed}" if cfg.seeds == 1 else f"seeds {cfg.seed}-{last} (mean ± std)"
    budget = f"{cfg.arch} @ {cfg.img_size} px, {cfg.steps} steps x batch {cfg.batch_size}, {seed_text}"
    if settings.get("recipe"):
        budget += ", recipe " + ", ".join(f"{k} {v}" for k, v in settings["recipe"].items())
    budget += f"; J&F at {cfg.eval_size} px short side, probe at " + (
        f"{cfg.seg_size} px" if cfg.seg_size else "the images' own size"
    )
    if cfg.probe_splits > 1:
        budget += f", mean of {cfg.probe_splits} holdout splits"
    if settings.get("merged_from"):
        budget += "; merged from " + ", ".join(settings["merged_from"])
    doc_md = (
        f"# edge-vsd ablation\n\n{budget}; videos: {', '.join(settings['video'])}\n\n{md}\n"
        "![accuracy vs delta](accuracy_vs_delta.png)\n\n![baselines](baselines.png)\n"
    )
    files = {
        "ablation.json": (json.dumps(result, indent=2) + "\n").encode(),
        "ablation.md": doc_md.encode(),
        "accuracy_vs_delta.png": plot_delta(cfg, table),
        "baselines.png": plot_baselines(table),
    }
    curves = plot_curves(table)
    if curves is not None:
        files["learning_curves.png"] = curves
        files["ablation.md"] += b"\n![learning curves](learning_curves.png)\n"
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        write_bytes_atomic(Path(cfg.out) / name, data)
    return md


MERGE_FREE = ("out", "deltas", "baselines")  # the only settings ablations merged into one table may differ in


def _read_ablation(path: Path) -> tuple[Path, dict[str, Any]]:
    """(file, its JSON) for an ablation folder or its ablation.json; one-line RuntimeInputError otherwise."""
    file = path / "ablation.json" if path.is_dir() else path
    if not file.is_file():
        raise RuntimeInputError(
            f"{file}: no such file (--merge takes ablation folders or their ablation.json)"
        )
    try:
        doc = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeInputError(f"{file}: not a readable ablation.json ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict) or not {"settings", "arms", "eval_settings"} <= doc.keys():
        raise RuntimeInputError(f"{file}: not an ablation.json (needs settings, arms and eval_settings)")
    return file, doc


def _same_scores(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(
        (a.get(k) is None) == (b.get(k) is None) and (a.get(k) is None or abs(a[k] - b[k]) < 1e-6)
        for k in ARM_METRICS
    )


def _eval_settings(doc: dict[str, Any]) -> dict[str, Any]:
    """An ablation's eval settings, with today's defaults for the settings added since it was run."""
    defaults = {k: v for k, v in asdict(EvalConfig()).items() if k != "propagation"}
    return defaults | doc["eval_settings"]


def merge(paths: list[Path], out: Path) -> dict[str, Any]:
    """One table from ablations run apart (other sessions, machines) with the same settings and evaluation:
    their arms united, arms they share (the random start, the floors) checked to score the same."""
    docs = [_read_ablation(p) for p in paths]
    for file, _ in docs:
        if file.parent.resolve() == out.resolve():
            raise RuntimeInputError(
                f"--out {out}: holds {file.name}, one of the ablations to merge; pick another"
            )
    first_file, first = docs[0]
    defaults = asdict(AblateConfig(video=[], out=""))  # for the settings added since a part was run
    for file, doc in docs[1:]:
        for key in sorted((first["settings"].keys() | doc["settings"].keys()) - set(MERGE_FREE)):
            mine = doc["settings"].get(key, defaults.get(key))
            theirs = first["settings"].get(key, defaults.get(key))
            if mine != theirs:
                raise RuntimeInputError(
                    f"{file}: {key} {mine!r} differs from {theirs!r} in {first_file} (only arms may differ)"
                )
        if _eval_settings(doc) != _eval_settings(first):
            raise RuntimeInputError(f"{file}: evaluated with other settings than {first_file}")
    arms: dict[str, tuple[Path, dict[str, Any]]] = {}
    for file, doc in docs:
        for arm in doc["arms"]:
            seen = arms.setdefault(arm["arm"], (file, arm))
            if not _same_scores(seen[1], arm):
                raise RuntimeInputError(f"{file}: arm {arm['arm']} scores differently than in {seen[0]}")
    rows = [a for _, a in arms.values()]
    vsd = sorted((a for a in rows if a["method"] == "vsd"), key=lambda a: a["delta"])
    baselines = [a for b in BASELINES for a in rows if a["method"] == b]
    table = vsd + baselines + [a for a in rows if a["method"] not in ("vsd", *BASELINES)]
    settings = dict(first["settings"]) | {
        "out": str(out),
        "deltas": [a["delta"] for a in vsd],
        "baselines": [a["method"] for a in baselines],
        "merged_from": [str(f) for f, _ in docs],
    }
    cfg = AblateConfig(**{f.name: settings[f.name] for f in fields(AblateConfig) if f.name in settings})
    result = {"settings": settings, "arms": table, "eval_settings": first["eval_settings"]}
    result["markdown"] = write_report(cfg, result)
    return result


def _list(text: str, kind=float) -> list:
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = AblateConfig(video=[], out="")
    p.add_argument("--video", action="append", metavar="PATH", help="training video (repeat)")
    p.add_argument("--out", required=True, metavar="DIR", help="ablation folder (resumable)")
    p.add_argument(
        "--merge",
        action="append",
        metavar="ABLATION",
        help="train nothing: unite the arms of finished ablations (folders or ablation.json, repeat) run "
        "apart with the same settings into one table in --out",
    )
    p.add_argument("--deltas", type=_list, default=d.deltas, help="VSD arms (default 0,5,15,30,60)")
    p.add_argument(
        "--baselines",
        type=lambda t: _list(t, str),
        default=d.baselines,
        help="dino (DINO preset on the same frames), init (the starting weights); default dino,init",
    )
    p.add_argument("--delta-seconds", action="store_true", help="--deltas are seconds, not frames")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps per arm (default {d.steps})")
    p.add_argument("--arch", default=d.arch, choices=["vit_tiny", "vit_small", "vit_base"])
    p.add_argument("--img-size", type=int, default=d.img_size)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--init", metavar="CKPT", help="start every arm from this checkpoint (also the init arm)")
    p.add_argument("--seed", type=int, default=d.seed, help="first seed (default 0)")
    p.add_argument(
        "--seeds",
        type=int,
        default=d.seeds,
        help="train every arm with this many seeds; tables give mean ± std, the JSON each seed (default 1)",
    )
    p.add_argument("--lr", type=float, help="base learning rate per 256 pairs (train's default otherwise)")
    p.add_argument("--out-dim", type=int, help="head prototypes (train's default otherwise)")
    p.add_argument(
        "--config",
        metavar="FILE",
        help='JSON/TOML file of train settings every arm uses, e.g. {"koleo": 1}; each arm\'s method, '
        "delta, seed and the flags above win",
    )
    p.add_argument("--device", default=d.device, choices=["cpu", "cuda"])
    p.add_argument("--workers", type=int, default=d.workers, help="data-loading processes (default 0)")
    p.add_argument("--davis", metavar="DIR", help="DAVIS-layout folder for J&F (e.g. from make-data)")
    p.add_argument("--seg-data", metavar="DIR", help="ADE20K-layout folder for the linear and kNN probes")
    p.add_argument("--eval-size", type=int, default=d.eval_size, help="DAVIS short side (default 224)")
    p.add_argument("--seg-size", type=int, help="probe short side (default: the images' own)")
    p.add_argument("--radius", type=int, default=d.radius, help="propagation neighbourhood in patches")
    p.add_argument("--max-frames", type=int, default=d.max_frames, help="frames per DAVIS sequence")
    p.add_argument(
        "--probe-splits",
        type=int,
        default=d.probe_splits,
        metavar="N",
        help="average the seg probes over N seeded holdout splits (default 1, as eval)",
    )


def run(args: argparse.Namespace) -> int:
    if args.merge:
        return run_merge(args)
    if not args.video:
        raise RuntimeInputError("ablate needs --video PATH (or --merge to unite finished ablations)")
    if not (args.davis or args.seg_data):
        raise RuntimeInputError("ablate needs labelled data: --davis DIR and/or --seg-data DIR")
    baselines = [b for b in args.baselines if b]
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise RuntimeInputError(
            f"--baselines {','.join(unknown)}: unknown (choose from {', '.join(BASELINES)})"
        )
    if any(d < 0 for d in args.deltas) or (args.delta_seconds and any(d <= 0 for d in args.deltas)):
        raise RuntimeInputError(f"--deltas {args.deltas}: must be >= 0 (> 0 with --delta-seconds)")
    if not args.delta_seconds and any(d != int(d) for d in args.deltas):
        raise RuntimeInputError(f"--deltas {args.deltas}: frames are whole numbers (or pass --delta-seconds)")
    if args.steps < 1:
        raise RuntimeInputError(f"--steps {args.steps}: must be at least 1")
    for flag, value in (("--seeds", args.seeds), ("--probe-splits", args.probe_splits)):
        if value < 1:
            raise RuntimeInputError(f"{flag} {value}: must be at least 1")
    if args.seg_size is not None and args.seg_size < 16:
        raise RuntimeInputError(f"--seg-size {args.seg_size}: must be at least 16")
    for path in (*args.video, args.davis, args.seg_data, args.init, args.config):
        if path and not Path(path).exists():
            raise RuntimeInputError(f"{path}: no such file or folder")
    cfg = AblateConfig(
        video=args.video,
        out=args.out,
        deltas=args.deltas,
        baselines=baselines,
        delta_seconds=args.delta_seconds,
        steps=args.steps,
        arch=args.arch,
        img_size=args.img_size,
        batch_size=args.batch_size,
        init=args.init,
        seed=args.seed,
        seeds=args.seeds,
        lr=args.lr,
        out_dim=args.out_dim,
        device=args.device,
        workers=args.workers,
        davis=args.davis,
        seg_data=args.seg_data,
        eval_size=args.eval_size,
        seg_size=args.seg_size,
        radius=args.radius,
        max_frames=args.max_frames,
        config=args.config,
        probe_splits=args.probe_splits,
    )
    result = ablate(cfg, log=lambda m: print(m, file=sys.stderr))
    return _print_result(result, cfg.out)


def run_merge(args: argparse.Namespace) -> int:
    if len(args.merge) < 2:
        raise RuntimeInputError("--merge: name at least two ablations to unite")
    if args.video:
        raise RuntimeInputError("--merge trains nothing: drop --video")
    from edge_vsd.benchmarks.report import check_writable

    check_writable(args.out, "--out")
    previous = Path(args.out) / "ablation.json"
    if previous.exists() and "merged_from" not in _read_ablation(previous)[1]["settings"]:
        raise RuntimeInputError(f"--out {args.out}: holds a trained ablation; merge into another folder")
    result = merge([Path(p) for p in args.merge], Path(args.out))
    return _print_result(result, args.out)


def _print_result(result: dict[str, Any], out: str) -> int:
    """The table on stdout and where the files went: what `ablate` and `ablate --merge` both end with."""
    print(result["markdown"], end="")
    print(f"ablation: {Path(out) / 'ablation.md'} (ablation.json, accuracy_vs_delta.png, baselines.png)")
    return 0
