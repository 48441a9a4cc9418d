"""`train --eval-every N`: the student and the teacher scored on a small labelled held-out set while they
train (step 0 is the random start), written into metrics.jsonl and drawn as a learning curve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_vsd.benchmarks.davis import PropagationSettings
from edge_vsd.benchmarks.evaluate import EvalConfig, Model, dig, evaluate_model, load_inputs
from edge_vsd.benchmarks.torch_reference import TorchEncoder
from edge_vsd.runtimes.errors import RuntimeInputError

# bounded, so an evaluation costs seconds: DAVIS sequences and frames, labelled images, correspondence frames
SEQUENCES, FRAMES, IMAGES = 2, 20, 32
METRICS = {"JF": ("davis", "JF"), "miou": ("seg", "linear", "miou"), "corr": ("correspondence", "corr_acc")}


def eval_config(data: str | Path, img_size: int) -> EvalConfig:
    """What `--eval-data` names: a make-data folder (davis/ and ade/), a DAVIS folder, an ADE20K-layout
    folder, or a video or image folder (warp + lighting correspondence, no labels)."""
    root = Path(data)
    if not root.exists():
        raise RuntimeInputError(f"{root}: no such file or folder (--eval-data)")
    davis = seg = frames = None
    if (root / "davis").is_dir() or (root / "ade").is_dir():
        davis = str(root / "davis") if (root / "davis").is_dir() else None
        seg = str(root / "ade") if (root / "ade").is_dir() else None
    elif (root / "JPEGImages").is_dir():
        davis = str(root)
    elif (root / "annotations").is_dir():
        seg = str(root)
    else:
        frames = str(root)
    cfg = EvalConfig(
        davis=davis,
        seg_data=seg,
        data=frames,
        max_frames=FRAMES,
        propagation=PropagationSettings(radius=3, short_side=2 * img_size),
        seg_images=IMAGES,
        floors=False,
    )
    if davis:
        from edge_vsd.benchmarks.davis import load_davis

        cfg.sequences = [s.name for s in load_davis(davis)][:SEQUENCES]
    return cfg


class TrainingEval:
    """Scores the student and teacher backbones on the held-out set; `__call__` returns the metrics row."""

    def __init__(self, data: str | Path, img_size: int, out: str | Path) -> None:
        self.cfg = eval_config(data, img_size)
        self.inputs = load_inputs(self.cfg)  # read once; errors before training starts
        self.out = Path(out)

    def __call__(self, step: int, nets: dict[str, Any], device: str) -> dict[str, Any]:
        row: dict[str, Any] = {"step": step, "eval": {}}
        for name, backbone in nets.items():
            was_training = backbone.training
            backbone.eval()
            try:
                model = Model.floor(name, TorchEncoder(backbone, backbone.cfg.img_size, device))
                result = evaluate_model(model, self.cfg, inputs=self.inputs)
            finally:
                backbone.train(was_training)
            scores = {k: dig(result, path) for k, path in METRICS.items()}
            row["eval"][name] = {k: v for k, v in scores.items() if v is not None}
        return row

    def plot(self, metrics_file: Path) -> Path | None:
        """learning_curve.png beside the checkpoint: every eval metric of student and teacher against step."""
        rows = [json.loads(r) for r in metrics_file.read_text().splitlines() if r.strip()]
        evals = [r for r in rows if "eval" in r]
        if not evals:
            return None
        from edge_vsd.benchmarks.plots import _png, plt

        keys = sorted({k for r in evals for net in r["eval"].values() for k in net})
        fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.4), squeeze=False)
        for ax, key in zip(axes[0], keys):
            for net, style in (("teacher", "o-"), ("student", "s--")):
                pts = [(r["step"], r["eval"][net][key]) for r in evals if key in r["eval"].get(net, {})]
                if pts:
                    ax.plot(*zip(*pts), style, label=net)
            ax.set_xlabel("step")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        path = self.out / "learning_curve.png"
        tmp = path.with_suffix(".png.partial")
        tmp.write_bytes(_png(fig))
        tmp.replace(path)
        return path
