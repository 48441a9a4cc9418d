"""`edge-vsd eval`: representation quality on labelled tasks, for checkpoints and artifacts alike.

- DAVIS-2017 label propagation (J, F, J&F), DINO's protocol (`edge_vsd.benchmarks.davis`);
- the linear segmentation probe on an ADE20K-layout folder (`edge_vsd.benchmarks.seg_probe`);
- weighted kNN patch classification on the same folder (DINO's kNN: k 20, T 0.07, cosine);
- the region probe on the same folder: each labelled region's class from its mask-pooled features;
- patch correspondence under random homographies on a video (`--data`), where given.
An artifact is evaluated at its exported input size; a checkpoint at DINO's evaluation size."""

from __future__ import annotations

import argparse
import base64
import html
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from edge_vsd.benchmarks.accuracy import correspondence
from edge_vsd.benchmarks.davis import (
    PropagationSettings,
    copy_first_mask,
    dino_size,
    evaluate_sequence,
    load_davis,
    patch_oracle,
    summarize,
)
from edge_vsd.benchmarks.floors import FLOOR_SEEDS, RawPixels, mean_std, outline_patches, random_init
from edge_vsd.benchmarks.region_probe import region_probe
from edge_vsd.benchmarks.report import check_report_dir
from edge_vsd.benchmarks.runner import unique_names
from edge_vsd.benchmarks.seg_probe import (
    IGNORE,
    SegData,
    holdout_split,
    load_seg_data,
    miou,
    over_splits,
    patch_labels,
    seg_features,
    seg_probe,
)
from edge_vsd.benchmarks.torch_reference import TorchEncoder
from edge_vsd.runtimes.atomic import write_bytes_atomic
from edge_vsd.runtimes.errors import RuntimeInputError

OUTLINES = "outlines (truth's edges as patches)"
PROBE_EPOCHS = 30  # the "fast linear" probe: a linear softmax on frozen patch features, Adam, 30 epochs
CORRESPONDENCE_FRAMES = 16  # frames of --data for patch correspondence


@dataclass
class EvalConfig:
    davis: str | None = None
    seg_data: str | None = None
    data: str | None = None  # a video for patch correspondence
    max_frames: int | None = 50  # per DAVIS sequence
    sequences: list[str] | None = None
    propagation: PropagationSettings = PropagationSettings()
    seg_images: int = 200
    seg_size: int | None = None  # probe short side for checkpoints (None: the images' own); DINOv2 ADE: 512
    knn_k: int = 20
    knn_temperature: float = 0.07
    floors: bool = True  # raw pixels, random inits and the trivial answers beside the models
    floor_seeds: int = FLOOR_SEEDS
    lighting: bool = True  # correspondence: the warped view also changes light and noise
    topic: str | None = None  # --data a ROS 2 bag: its image topic (None: the bag's only one)
    probe_splits: int = 1  # the linear and kNN probes' seeded holdout splits, averaged (1: split 0 alone)


class Model:
    """A checkpoint (run in PyTorch at the size each task asks) or an artifact (at its exported size)."""

    encoder: Any  # an artifact's Encoder, a TorchReference or a floor: the calls they share, duck-typed

    def __init__(self, spec: str) -> None:
        path = Path(spec)
        hf_folder = (path / "config.json").is_file() and (path / "model.safetensors").is_file()
        if path.is_dir() and not hf_folder:
            from edge_vsd import runtimes

            self.kind, self.encoder = "artifact", runtimes.load(path)
            self.backend = self.encoder.backend_name
            self.precision = self.encoder.manifest.get("precision", "?")
        elif path.is_file() or hf_folder:  # a checkpoint, or a Hugging Face DINOv2 folder
            from edge_vsd.benchmarks.torch_reference import TorchReference

            self.kind, self.encoder = "checkpoint", TorchReference(path)
            self.backend, self.precision = "pytorch", "fp32"
        else:
            raise RuntimeInputError(f"{path}: no such checkpoint file or artifact folder")
        self.path = path
        self.patch = int(self.encoder.manifest["model"]["patch_size"])

    @classmethod
    def floor(cls, name: str, encoder: Any) -> Model:
        """A floor (raw pixels, a random init) evaluated like a checkpoint: at the size each task asks."""
        model = cls.__new__(cls)
        model.kind, model.encoder, model.path = "floor", encoder, Path(name)
        model.backend, model.precision = encoder.backend_name, "fp32"
        model.patch = int(encoder.manifest["model"]["patch_size"])
        return model

    def vit_config(self) -> Any:
        """The architecture (a ViTConfig) of a checkpoint or artifact, for its random-init floor."""
        if self.kind == "checkpoint":
            return self.encoder.model.cfg
        from edge_vsd.model import ViTConfig

        m = self.encoder.manifest["model"]
        size = tuple(m.get("trained_image_size") or m["image_size"])
        return ViTConfig(m["embed_dim"], m["depth"], m["num_heads"], m["patch_size"], size)

    def at_size(self, size: tuple[int, int]) -> Any:
        """The encoder, resized to `size` (H, W) where it can be (all but artifacts, which keep theirs)."""
        if self.kind != "artifact":
            p = self.patch
            self.encoder.image_size = (max(p, size[0] // p * p), max(p, size[1] // p * p))
        return self.encoder

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.encoder.image_size
        return (size[0], size[1])


def knn_patch_probe(
    feats: np.ndarray, labels: np.ndarray, k: int, temperature: float, holdout: float = 0.25, seed: int = 0
) -> dict[str, Any]:
    """Weighted kNN on patch features (DINO's kNN classifier, applied per patch): accuracy on held-out
    images' labelled patches, memory bank = the other images' patches."""
    n, gh, gw, d = feats.shape
    y = patch_labels(labels, (gh, gw))
    test, train = holdout_split(n, holdout, seed)
    x_tr, y_tr = feats[train].reshape(-1, d), y[train].reshape(-1)
    x_te, y_te = feats[test].reshape(-1, d), y[test].reshape(-1)
    x_tr, y_tr = x_tr[y_tr != IGNORE], y_tr[y_tr != IGNORE]
    x_te, y_te = x_te[y_te != IGNORE], y_te[y_te != IGNORE]
    if not len(y_tr) or not len(y_te):
        return {"acc": None}
    norm = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    x_tr, x_te = norm(x_tr.astype(np.float32)), norm(x_te.astype(np.float32))
    classes = np.unique(y_tr)
    correct = 0
    k = min(k, len(y_tr))
    for s in range(0, len(y_te), 1024):
        sim = x_te[s : s + 1024] @ x_tr.T
        idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        w = np.exp(np.take_along_axis(sim, idx, 1) / temperature)
        votes = np.zeros((len(idx), len(classes)))
        np.add.at(votes, (np.arange(len(idx))[:, None], np.searchsorted(classes, y_tr[idx])), w)
        correct += int((classes[votes.argmax(1)] == y_te[s : s + 1024]).sum())
    majority = float(np.mean(y_te == np.bincount(y_tr).argmax()))
    return {"acc": correct / len(y_te), "majority": majority, "k": k, "temperature": temperature}


def eval_davis(model: Model, cfg: EvalConfig, log) -> dict[str, Any]:
    assert cfg.davis is not None  # run only when the config names a DAVIS folder
    seqs = load_davis(cfg.davis, cfg.sequences, cfg.max_frames)
    per_seq = []
    for seq in seqs:
        first = cv2.imread(str(seq.frames[0]), cv2.IMREAD_COLOR)
        if first is None:
            raise RuntimeInputError(f"{seq.frames[0]}: cannot be decoded")
        h, w = first.shape[:2]
        enc = model.at_size(dino_size(h, w, cfg.propagation.short_side))
        start = time.perf_counter()
        r = evaluate_sequence(enc, seq, cfg.propagation)
        secs = time.perf_counter() - start
        log(f"    {seq.name}: J {_n(r['J'])} F {_n(r['F'])} ({r['frames']} frames, {secs:.1f} s)")
        per_seq.append(r)
    out = summarize(per_seq)
    out["input_size"] = list(model.image_size)
    out["sequences"] = [
        {k: v for k, v in r.items() if k not in ("predictions", "gts", "images")} for r in per_seq
    ]
    out["_first"] = per_seq[0]  # for the picture; not written to results.json
    return out


def seg_input_size(image_size: tuple[int, int], short_side: int | None) -> tuple[int, int]:
    """The probe's input size: the images' own, or their aspect at `short_side` (long side floored to 64s)."""
    h, w = image_size
    return (h, w) if short_side is None else dino_size(h, w, short_side)


def eval_seg(model: Model, cfg: EvalConfig, data: SegData | None = None) -> dict[str, Any]:
    if data is None:
        assert cfg.seg_data is not None  # run only when the config names a probe data set
        data = load_seg_data(cfg.seg_data, cfg.seg_images)
    enc = model.at_size(seg_input_size(data.images.shape[1:3], cfg.seg_size))
    size = model.image_size
    return {**seg_probes(seg_features(enc, data, size), cfg, data), "input_size": list(size)}


def seg_probes(features: tuple[np.ndarray, np.ndarray], cfg: EvalConfig, data: SegData) -> dict[str, Any]:
    """The linear patch probe, the kNN and the region probe on (labels, patch features) at one size."""
    labels, feats = features
    size = (labels.shape[1], labels.shape[2])
    return {
        "linear": over_splits(
            lambda seed: seg_probe(None, data, size, epochs=PROBE_EPOCHS, seed=seed, features=features),
            cfg.probe_splits,
        ),
        "knn": over_splits(
            lambda seed: knn_patch_probe(feats, labels, cfg.knn_k, cfg.knn_temperature, seed=seed),
            cfg.probe_splits,
            keys=("acc", "majority"),
        ),
        "region": region_probe(feats, labels),
    }


@dataclass
class EvalInputs:
    """The labelled data and frames, read and checked once before any model runs."""

    seg: SegData | None = None
    frames: np.ndarray | None = None  # --data frames for patch correspondence


def load_inputs(cfg: EvalConfig) -> EvalInputs:
    """Check every dataset the config names (layout, decodable files) and read what is shared by all
    models; one-line RuntimeInputError naming the folder or file otherwise."""
    for root, flag in ((cfg.davis, "--davis"), (cfg.seg_data, "--seg-data"), (cfg.data, "--data")):
        if root and not Path(root).exists():
            raise RuntimeInputError(f"{root}: no such file or folder ({flag})")
    if cfg.davis:
        load_davis(cfg.davis, cfg.sequences, cfg.max_frames)
    inputs = EvalInputs()
    if cfg.seg_data:
        inputs.seg = load_seg_data(cfg.seg_data, cfg.seg_images)
    if cfg.data:
        from edge_vsd.benchmarks.data import load_frames

        inputs.frames, _ = load_frames(cfg.data, CORRESPONDENCE_FRAMES, topic=cfg.topic)
    return inputs


def evaluate_model(
    model: Model, cfg: EvalConfig, log=lambda m: None, inputs: EvalInputs | None = None
) -> dict[str, Any]:
    """Every task the config names, for one model (`inputs` from load_inputs, read here when not given)."""
    if inputs is None:
        inputs = load_inputs(cfg)
    out: dict[str, Any] = {
        "model": model.path.name,
        "kind": model.kind,
        "backend": model.backend,
        "precision": model.precision,
    }
    if cfg.davis:
        log("  DAVIS label propagation")
        out["davis"] = eval_davis(model, cfg, log)
    if cfg.seg_data:
        log("  linear probe, kNN and region probe (ADE20K layout)")
        out["seg"] = eval_seg(model, cfg, inputs.seg)
    if cfg.data:
        assert inputs.frames is not None  # loaded with cfg.data
        enc = model.at_size(inputs.frames.shape[1:3])
        out["correspondence"] = correspondence(enc, inputs.frames, model.image_size, lighting=cfg.lighting)
    return out


def majority_answer(labels: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """The majority class of a probe split's training images, scored on its held-out images."""
    test, train = holdout_split(len(labels), seed=seed)  # the probes' own split
    seen = labels[train][labels[train] != IGNORE]
    majority = int(np.bincount(seen.ravel()).argmax()) if seen.size else 0
    target = labels[test]
    present = np.unique(np.concatenate([seen.ravel(), target[target != IGNORE].ravel()]))
    m, acc = miou(np.full_like(target, majority), target, present)
    return {"miou": m, "pixel_acc": acc, "majority": majority}


def trivial_answers(cfg: EvalConfig, inputs: EvalInputs) -> dict[str, Any]:
    """The floors that need no model: copy-the-first-mask (DAVIS) and the majority class of the probes'
    training split (same split as the probes). `run_eval` adds correspondence's chance."""
    out: dict[str, Any] = {"name": "trivial", "kind": "floor", "backend": "-", "precision": "-"}
    if cfg.davis:
        seqs = load_davis(cfg.davis, cfg.sequences, cfg.max_frames)
        out["davis"] = copy_first_mask(seqs, cfg.propagation)
    if inputs.seg is not None:
        labels = inputs.seg.labels
        linear = over_splits(lambda seed: majority_answer(labels, seed), cfg.probe_splits)
        majority = linear.pop("majority")
        out["seg"] = {"linear": linear, "knn": {"acc": linear["pixel_acc"]}, "majority": majority}
        # a constant answer names one class for every region: its balanced accuracy is 1 / classes
        out["seg"]["region"] = {"balanced_acc": 1.0 / len(np.unique(labels[labels != IGNORE]))}
    return out


FLOOR_METRICS = {  # (task, path to a number) for the mean and spread of the random-init floor
    "JF": ("davis", "JF"),
    "J": ("davis", "J"),
    "F": ("davis", "F"),
    "miou": ("seg", "linear", "miou"),
    "pixel_acc": ("seg", "linear", "pixel_acc"),
    "knn": ("seg", "knn", "acc"),
    "region": ("seg", "region", "balanced_acc"),
    "corr_acc": ("correspondence", "corr_acc"),
}


def dig(result: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        result = (result or {}).get(key) if isinstance(result, dict) else None
    return result


def floor_rows(
    reference: Model, cfg: EvalConfig, inputs: EvalInputs, log=lambda m: None
) -> list[dict[str, Any]]:
    """Raw pixels, the reference's architecture at `floor_seeds` random inits (mean, spread, each seed), and
    the trivial answers: the rows every quality table is read against."""
    rows = []
    log(f"raw pixels (floor, patch {reference.patch})")
    pixels = Model.floor("raw pixels", RawPixels(reference.patch, reference.image_size))
    rows.append({"name": "raw pixels", **evaluate_model(pixels, cfg, log, inputs)})
    (rows[0].get("davis") or {}).pop("_first", None)  # the masks picture shows the models only
    try:
        vit_cfg = reference.vit_config()
    except (ImportError, KeyError) as exc:  # an artifact evaluated where torch is not installed
        log(f"random-init floor skipped ({exc})")
        vit_cfg = None
    if vit_cfg is not None and cfg.floor_seeds > 0:
        seeds = []
        for seed in range(cfg.floor_seeds):
            log(f"random init, seed {seed} (floor)")
            enc = TorchEncoder(random_init(vit_cfg, seed), reference.image_size)
            seeds.append(evaluate_model(Model.floor(f"random init {seed}", enc), cfg, log, inputs))
        for r in seeds:
            (r.get("davis") or {}).pop("_first", None)
        name = f"random init ({cfg.floor_seeds} seeds)"
        row: dict[str, Any] = {"name": name, "kind": "floor", "backend": "pytorch", "precision": "fp32"}
        row["spread"] = {}
        for key, path in FLOOR_METRICS.items():
            stats = mean_std([dig(r, path) for r in seeds])
            if stats["n"]:
                node = row
                for part in path[:-1]:
                    node = node.setdefault(part, {})
                node[path[-1]] = stats["mean"]
                row["spread"][key] = stats
        row["seeds"] = seeds
        rows.append(row)
    rows.append(trivial_answers(cfg, inputs))
    if cfg.davis or inputs.seg is not None:  # correspondence has no labels to build a ceiling from
        rows.append(oracle_answers(reference, cfg, inputs))
    if inputs.seg is not None:
        rows.append(outline_answers(reference, cfg, inputs.seg))
    return rows


def probe_labels(data: SegData, cfg: EvalConfig) -> np.ndarray:
    """The probe's label maps at the size the checkpoints and floors are scored at."""
    h, w = seg_input_size(data.labels.shape[1:3], cfg.seg_size)
    return np.stack([cv2.resize(lb, (w, h), interpolation=cv2.INTER_NEAREST) for lb in data.labels])


def outline_answers(reference: Model, cfg: EvalConfig, data: SegData) -> dict[str, Any]:
    """The probes on the truth's outlines seen patch by patch (a perfect local edge detector at the
    reference's patch grid): how far local evidence alone takes them."""
    labels = probe_labels(data, cfg)
    p = reference.patch
    labels = labels[:, : labels.shape[1] // p * p, : labels.shape[2] // p * p]
    out: dict[str, Any] = {"name": OUTLINES, "kind": "reference", "backend": "-", "precision": "-"}
    out["seg"] = seg_probes((labels, outline_patches(labels, p)), cfg, data)
    return out


def oracle_answers(reference: Model, cfg: EvalConfig, inputs: EvalInputs) -> dict[str, Any]:
    """The ceiling beside the floors: the ground truth seen at the reference's patch grid (DAVIS masks,
    probe labels), so a table shows how much room there is between random features and perfect ones."""
    out: dict[str, Any] = {"name": "oracle (truth at the patch grid)", "kind": "ceiling", "backend": "-"}
    out["precision"] = "-"
    if cfg.davis:
        seqs = load_davis(cfg.davis, cfg.sequences, cfg.max_frames)
        out["davis"] = patch_oracle(seqs, cfg.propagation, reference.patch)
    if inputs.seg is not None:
        labels = probe_labels(inputs.seg, cfg)
        h, w = labels.shape[1:3]
        p = reference.patch
        cells = patch_labels(labels, (max(1, h // p), max(1, w // p)))
        up = np.stack(
            [cv2.resize(c.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST) for c in cells]
        )
        present = np.unique(labels[labels != IGNORE])
        m, acc = miou(up.astype(labels.dtype), labels, present)
        out["seg"] = {"linear": {"miou": m, "pixel_acc": acc}, "knn": {"acc": acc}}
    return out


TABLE = [
    "model",
    "kind",
    "backend",
    "J&F",
    "J",
    "F",
    "seg mIoU",
    "seg acc",
    "kNN acc",
    "region bal. acc",
    "corr. acc",
]


def _n(v: Any, spread: dict[str, Any] | None = None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f} ± {spread['std']:.3f}" if spread and spread.get("n", 0) > 1 else f"{v:.3f}"


def table_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        spread = r.get("spread") or {}
        cells = [_n(dig(r, path), spread.get(key)) for key, path in FLOOR_METRICS.items()]  # TABLE's order
        backend = f"{r['backend']} {r['precision']}" if r["backend"] != "-" else "-"
        rows.append([r["name"], r["kind"], backend, *cells])
    return rows


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(TABLE) + " |", "|" + "---|" * len(TABLE)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return "\n".join(lines) + "\n"


PALETTE = np.array(
    [[0, 0, 0], [0, 0, 200], [0, 200, 0], [200, 0, 0], [0, 200, 200], [200, 0, 200], [200, 200, 0]],
    np.uint8,
)


def overlay(frame: np.ndarray, ids: np.ndarray) -> np.ndarray:
    colours = PALETTE[np.mod(ids, len(PALETTE))]
    out = frame.copy()
    fg = ids > 0
    out[fg] = (0.45 * frame[fg] + 0.55 * colours[fg]).astype(np.uint8)
    return out


def masks_picture(
    first: dict[str, Any], per_model: list[tuple[str, dict[str, Any]]], columns: int = 5
) -> bytes:
    """PNG: ground truth (top row) and each model's propagated masks over frames of one sequence."""
    images = first["images"]
    idx = np.linspace(0, len(images) - 1, min(columns, len(images))).round().astype(int)
    h, w = images.shape[1:3]
    scale = min(1.0, 200 / h)
    size = (int(w * scale), int(h * scale))
    rows = []
    gts = first["gts"]
    for label, preds in [("ground truth", gts)] + [(n, r["predictions"]) for n, r in per_model]:
        tiles = []
        for i in idx:
            ids = preds[i] if preds[i] is not None else np.zeros((h, w), np.int64)
            tiles.append(cv2.resize(overlay(images[i], ids), size, interpolation=cv2.INTER_AREA))
        row = np.concatenate(tiles, 1)
        bar = np.full((22, row.shape[1], 3), 255, np.uint8)
        cv2.putText(
            bar,
            f"{label} ({first['name']}, frames {', '.join(map(str, idx))})",
            (4, 16),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
        rows += [bar, row]
    ok, png = cv2.imencode(".png", np.concatenate(rows, 0))
    return png.tobytes()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def html_page(results: list[dict[str, Any]], picture: bytes | None, settings: dict[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in TABLE)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_rows(results)
    )
    img = (
        f'<figure><img alt="propagated masks" src="data:image/png;base64,{_b64(picture)}">'
        "<figcaption>DAVIS label propagation: ground truth, then each model</figcaption></figure>"
        if picture
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edge-vsd eval</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 24px; }} table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #aab7b8; padding: 4px 8px; text-align: right; }} th {{ background: #d6eaf8; }}
td:first-child {{ text-align: left; }} img {{ max-width: 100%; }} pre {{ background: #f4f6f6; padding: 8px; }}
</style></head><body><h1>edge-vsd eval</h1>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{img}
<details><summary>Settings</summary><pre>{html.escape(json.dumps(settings, indent=2))}</pre></details>
</body></html>
"""


def run_eval(models: list[str], cfg: EvalConfig, report: str | Path, force: bool = False, log=print):
    """Evaluate every model; write results.json, report.md, report.html and masks.png into `report`."""
    if not (cfg.davis or cfg.seg_data or cfg.data):
        raise RuntimeInputError("nothing to evaluate: pass --davis DIR, --seg-data DIR and/or --data VIDEO")
    check_report_dir(report, force)
    for spec in models:
        if not Path(spec).exists():
            raise RuntimeInputError(f"{spec}: no such checkpoint file or artifact folder")
    inputs = load_inputs(cfg)  # layout and decoding errors before any model loads
    opened = [Model(m) for m in models]
    names = unique_names([m.path for m in opened])
    results, firsts = [], []
    for name, model in zip(names, opened):
        log(f"{name} ({model.kind}, {model.backend})")
        r = {"name": name, **evaluate_model(model, cfg, log, inputs)}
        if "davis" in r:
            firsts.append((name, r["davis"].pop("_first")))
        results.append(r)
    if cfg.floors and opened:
        floors = floor_rows(opened[0], cfg, inputs, log)
        chance = (results[0].get("correspondence") or {}).get("chance")
        if chance is not None:  # a random match's hit rate at the first model's grid
            next(r for r in floors if r["name"] == "trivial")["correspondence"] = {"corr_acc": chance}
        results += floors
    picture = masks_picture(firsts[0][1], firsts) if firsts else None
    settings = {
        **{k: v for k, v in asdict(cfg).items() if k != "propagation"},
        "propagation": asdict(cfg.propagation),
        "davis": Path(cfg.davis).name if cfg.davis else None,
        "seg_data": Path(cfg.seg_data).name if cfg.seg_data else None,
        "data": Path(cfg.data).name if cfg.data else None,
        "probe_epochs": PROBE_EPOCHS,
    }
    doc = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": settings, "models": results}
    out = Path(report)
    out.mkdir(parents=True, exist_ok=True)
    md = f"# edge-vsd eval\n\n{markdown_table(results)}\n"
    if picture:
        md += "\n![propagated masks](masks.png)\n"
    files = {
        "results.json": (json.dumps(doc, indent=2) + "\n").encode(),
        "report.md": md.encode(),
        "report.html": html_page(results, picture, settings).encode(),
        **({"masks.png": picture} if picture else {}),
    }
    for name, data in files.items():
        write_bytes_atomic(out / name, data)
    return doc


def add_arguments(p: argparse.ArgumentParser) -> None:
    d, s = EvalConfig(), PropagationSettings()
    p.add_argument("models", nargs="+", metavar="MODEL", help="edge-vsd/DINO checkpoint or artifact folder")
    p.add_argument("--report", required=True, metavar="DIR", help="results.json, report.md/.html, masks.png")
    p.add_argument("--davis", metavar="DIR", help="DAVIS-2017 layout: JPEGImages/480p, Annotations/480p")
    p.add_argument("--seg-data", metavar="DIR", help="ADE20K layout: images/, annotations/ (linear + kNN)")
    p.add_argument(
        "--seg-size",
        type=int,
        help="probe short side for checkpoints and floors (default: the images' own; DINOv2 on ADE: 512)",
    )
    p.add_argument(
        "--data", metavar="VIDEO", help="video, image folder or ROS 2 bag for patch correspondence"
    )
    p.add_argument("--topic", help="--data a ROS 2 bag: the image topic (default: the bag's only one)")
    p.add_argument("--sequences", help="comma-separated DAVIS sequences (default: val.txt or all)")
    p.add_argument("--max-frames", type=int, default=d.max_frames, help="frames per sequence (default 50)")
    p.add_argument("--size", type=int, default=s.short_side, help="short side for checkpoints (DINO: 480)")
    p.add_argument("--n-last", type=int, default=s.n_last, help="queue of preceding frames (DINO: 7)")
    p.add_argument("--topk", type=int, default=s.topk, help="sources kept per target patch (DINO: 5)")
    p.add_argument(
        "--radius", type=int, default=s.radius, help="neighbourhood in patches, 0 = all (DINO: 12)"
    )
    p.add_argument("--temperature", type=float, default=s.temperature, help="affinity temperature (0.1)")
    p.add_argument(
        "--floors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the rows a table is read against: raw pixels, the first model's architecture at random "
        "init, copy-the-first-mask, majority class, chance and the truth's outlines (default on)",
    )
    p.add_argument(
        "--floor-seeds", type=int, default=d.floor_seeds, help="random inits for the floor (default 3)"
    )
    p.add_argument(
        "--probe-splits",
        type=int,
        default=d.probe_splits,
        metavar="N",
        help="average the linear and kNN seg probes over N seeded 25%% holdout splits of --seg-data, "
        "each split in results.json (default 1: split 0 alone, as published)",
    )
    p.add_argument("--force", action="store_true", help="replace a report already in DIR")


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    for flag, value, low in (
        ("--max-frames", args.max_frames, 3),
        ("--size", args.size, 16),
        ("--seg-size", args.seg_size, 16),
        ("--n-last", args.n_last, 0),
        ("--topk", args.topk, 1),
        ("--radius", args.radius, 0),
        ("--floor-seeds", args.floor_seeds, 0),
        ("--probe-splits", args.probe_splits, 1),
    ):
        if value is not None and value < low:
            raise RuntimeInputError(f"{flag} {value}: must be at least {low}")
    if not args.temperature > 0:
        raise RuntimeInputError(f"--temperature {args.temperature}: must be > 0")
    prop = PropagationSettings(args.n_last, args.topk, args.radius, args.temperature, args.size)
    seqs = [s for s in args.sequences.split(",") if s] if args.sequences else None
    return EvalConfig(
        args.davis,
        args.seg_data,
        args.data,
        args.max_frames,
        seqs,
        prop,
        floors=args.floors,
        floor_seeds=args.floor_seeds,
        topic=args.topic,
        seg_size=args.seg_size,
        probe_splits=args.probe_splits,
    )


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    doc = run_eval(args.models, cfg, args.report, args.force, log=lambda m: print(m, file=sys.stderr))
    print(markdown_table(doc["models"]), end="")
    print(f"report: {Path(args.report) / 'report.html'} (results.json, report.md, masks.png)")
    return 0
