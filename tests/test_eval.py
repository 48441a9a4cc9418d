"""`edge-vsd eval`, `make-data` and `ablate`: known answers for label propagation and its J/F scores, and the
commands end to end on generated data."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from edge_vsd.benchmarks.davis import (
    PropagationSettings,
    boundary_f,
    evaluate_sequence,
    grid_ids,
    jaccard,
    load_davis,
    one_hot,
    propagate,
)
from PIL import Image
from toy_artifact import make_toy_artifact

from edge_vsd.cli import main
from edge_vsd.data.make_data import DataConfig, make_data

GLOBAL = PropagationSettings(radius=0)  # every source patch may vote: no locality prior in the checks


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    cfg = DataConfig(
        out=str(tmp_path_factory.mktemp("gen") / "data"),
        sequences=2,
        frames=10,
        height=96,
        width=128,
        ade_images=8,
        videos=1,
        video_frames=40,
    )
    return make_data(cfg)


def square(n: int, top: int, left: int, side: int) -> np.ndarray:
    m = np.zeros((n, n), bool)
    m[top : top + side, left : left + side] = True
    return m


def test_jaccard_and_boundary_f_hand_cases():
    # two 10x10 squares overlapping in a 5x10 strip: 50 / 150
    assert jaccard(square(40, 0, 0, 10), square(40, 0, 5, 10)) == pytest.approx(1 / 3)
    assert jaccard(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0
    gt = square(100, 40, 40, 20)
    # tolerance ceil(0.008 * diagonal 141.4) = 2 px: a 1-px shift is within it, a 5-px shift leaves the top
    # and bottom edges matched (17 of 19+... pixels each way) and the side edges only near the corners:
    # 38 of the 76 boundary pixels match in each direction, so P = R = 0.5
    assert boundary_f(square(100, 40, 41, 20), gt) == 1.0
    assert boundary_f(square(100, 40, 45, 20), gt) == pytest.approx(0.5)
    assert boundary_f(np.zeros_like(gt), gt) == 0.0
    assert boundary_f(np.zeros_like(gt), np.zeros_like(gt)) == 1.0


def test_identical_frames_return_the_first_mask():
    rng = np.random.default_rng(0)
    feats = np.repeat(rng.standard_normal((1, 6, 8, 16)), 5, axis=0)
    ids = rng.integers(0, 3, (6, 8))
    soft = propagate(feats, one_hot(ids, 3), PropagationSettings())
    assert all(np.array_equal(s.argmax(0), ids) for s in soft)


class Oracle:
    """Features that encode the true mask: the one-hot object id of each 4-pixel cell."""

    def __init__(self, seq, n_ids: int) -> None:
        self.truth = {}
        for f, m in zip(seq.frames, seq.masks):
            img = cv2.imread(str(f))
            ids = np.array(Image.open(m)).astype(np.int64)
            small = grid_ids(ids, (ids.shape[0] // 4, ids.shape[1] // 4))
            self.truth[img.tobytes()] = one_hot(small, n_ids).transpose(1, 2, 0)

    def __call__(self, frames: np.ndarray):
        patches = np.stack([self.truth[f.tobytes()] for f in frames])
        return SimpleNamespace(cls=patches.mean((1, 2)), patches=patches)


RNG = np.random.default_rng(0)


def random_encoder(frames: np.ndarray):
    patches = RNG.standard_normal((len(frames), 24, 32, 16)).astype(np.float32)
    return SimpleNamespace(cls=patches.mean((1, 2)), patches=patches)


def boxes_davis(root: Path, n_seq: int = 2, frames: int = 8) -> Path:
    """A DAVIS-layout folder of two large boxes sliding over noise: masks a 4-pixel grid can represent."""
    from edge_vsd.data.make_data import write_indexed_png

    rng = np.random.default_rng(3)
    for s in range(n_seq):
        img_dir = root / "JPEGImages" / "480p" / f"boxes-{s}"
        ann_dir = root / "Annotations" / "480p" / f"boxes-{s}"
        img_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        for t in range(frames):
            frame = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
            ids = np.zeros((96, 128), np.uint8)
            for k, (top, left, dy, dx) in enumerate([(8, 8, 2, 3), (48, 64, -2, 4)], 1):
                y, x = top + dy * t, left + dx * t
                frame[y : y + 32, x : x + 40] = (60 * k, 200 - 60 * k, 120)
                ids[y : y + 32, x : x + 40] = k
            cv2.imwrite(str(img_dir / f"{t:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
            write_indexed_png(ann_dir / f"{t:05d}.png", ids)
    return root


def test_oracle_is_near_one_and_random_features_near_chance(tmp_path):
    seqs = load_davis(boxes_davis(tmp_path / "boxes"))
    oracle, rand, chance = [], [], []
    for seq in seqs:
        oracle.append(evaluate_sequence(Oracle(seq, 3), seq, GLOBAL))
        rand.append(evaluate_sequence(random_encoder, seq, GLOBAL))
        # chance: every pixel labelled at random with the first frame's label frequencies
        gts = [np.array(Image.open(m)).astype(np.int64) for m in seq.masks]
        labels, counts = np.unique(gts[0], return_counts=True)
        rng = np.random.default_rng(1)
        guess = [rng.choice(labels, g.shape, p=counts / counts.sum()) for g in gts]
        chance += [
            np.mean([jaccard(p == o, g == o) for p, g in zip(guess[1:-1], gts[1:-1])]) for o in labels[1:]
        ]
    jf_oracle = np.mean([(r["J"] + r["F"]) / 2 for r in oracle])
    j_rand = np.mean([o["J"] for r in rand for o in r["per_object"].values()])
    assert jf_oracle > 0.95, jf_oracle
    assert abs(j_rand - np.mean(chance)) < 0.1, (j_rand, np.mean(chance))


def test_make_data_layouts(data, capsys):
    seqs = load_davis(data / "davis")
    assert [s.name for s in seqs] == ["synthetic-00", "synthetic-01"] and len(seqs[0].frames) == 10
    with Image.open(seqs[0].masks[0]) as ann:
        assert ann.mode == "P" and set(np.unique(np.array(ann))) <= set(range(7))
    ade = sorted((data / "ade" / "annotations").glob("*.png"))
    assert len(ade) == 8 and set(np.unique(cv2.imread(str(ade[0]), cv2.IMREAD_UNCHANGED))) <= {1, 2, 3, 4}
    assert (data / "videos" / "train-00.avi").is_file()
    code = main(["make-data", "--out", str(data)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "already exists" in err[0]


def test_eval_cli_on_a_checkpoint_and_an_artifact(data, tmp_path, capsys):
    import torch

    from edge_vsd.model import build_vit

    torch.manual_seed(0)
    ckpt = tmp_path / "vit.pt"
    torch.save(build_vit("vit_tiny", 64).state_dict(), ckpt)  # a raw DINO-style backbone state_dict
    art = make_toy_artifact(tmp_path / "toy", image_size=(96, 128), patch=16, dim=32)
    report = tmp_path / "report"
    args = ["eval", str(ckpt), str(art), "--davis", str(data / "davis"), "--seg-data", str(data / "ade")]
    code = main([*args, "--report", str(report), "--size", "96", "--max-frames", "6", "--floor-seeds", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "| vit.pt | checkpoint |" in out and "| toy | artifact |" in out
    doc = json.loads((report / "results.json").read_text())
    for m in doc["models"][:2]:
        assert 0 <= m["davis"]["JF"] <= 1 and len(m["davis"]["sequences"]) == 2
        assert 0 <= m["seg"]["linear"]["miou"] <= 1 and 0 <= m["seg"]["knn"]["acc"] <= 1
        assert 0 <= m["seg"]["region"]["balanced_acc"] <= 1 and m["seg"]["region"]["regions"] > 8
    # every table carries its floors: raw pixels, the first model's architecture at random init, trivial
    floors = {m["name"]: m for m in doc["models"][2:]}
    assert list(floors) == [
        "raw pixels",
        "random init (2 seeds)",
        "trivial",
        "oracle (truth at the patch grid)",
        "outlines (truth's edges as patches)",
    ]
    rand = floors["random init (2 seeds)"]
    assert [r["model"] for r in rand["seeds"]] == ["random init 0", "random init 1"]
    jf = rand["spread"]["JF"]
    assert jf["n"] == 2 and jf["mean"] == pytest.approx(np.mean(jf["values"])) and jf["std"] > 0
    # seed 0 is the checkpoint's own weights (both drawn right after torch.manual_seed(0))
    assert jf["values"][0] == pytest.approx(doc["models"][0]["davis"]["JF"], abs=1e-6)
    assert f"{rand['davis']['JF']:.3f} ± {jf['std']:.3f}" in out
    trivial = floors["trivial"]
    assert 0 < trivial["davis"]["JF"] < 1 and trivial["seg"]["majority"] in (1, 2, 3, 4)
    assert 0 < trivial["seg"]["linear"]["pixel_acc"] < 1
    classes = doc["models"][0]["seg"]["linear"]["classes"]  # a constant answer names one class of them
    assert trivial["seg"]["region"]["balanced_acc"] == pytest.approx(1 / classes)
    assert "region bal. acc" in out and rand["spread"]["region"]["n"] == 2
    outlines = floors["outlines (truth's edges as patches)"]  # probes only: DAVIS has no such row
    assert "davis" not in outlines and 0 < outlines["seg"]["region"]["balanced_acc"] <= 1
    oracle = floors["oracle (truth at the patch grid)"]  # the ceiling: truth seen at the patch grid
    # at this tiny grid (6x8 patches) even the truth loses to copying the full-size first mask
    assert rand["davis"]["JF"] < oracle["davis"]["JF"] < 1
    assert oracle["seg"]["linear"]["miou"] > rand["seg"]["linear"]["miou"]
    assert 0 < outlines["seg"]["linear"]["miou"] < oracle["seg"]["linear"]["miou"]
    assert doc["models"][1]["davis"]["input_size"] == [96, 128]  # the artifact runs at its own size
    assert {"report.md", "report.html", "masks.png"} <= {p.name for p in report.iterdir()}
    assert cv2.imread(str(report / "masks.png")).shape[0] > 3 * 22  # ground truth + two model rows
    code = main([*args, "--report", str(report)])
    assert code == 2 and "already holds a report" in capsys.readouterr().err


def test_eval_seg_size_scores_checkpoints_and_floors_at_that_short_side(data, tmp_path, capsys):
    import torch

    from edge_vsd.model import build_vit

    torch.manual_seed(0)
    ckpt = tmp_path / "vit.pt"
    torch.save(build_vit("vit_tiny", 64).state_dict(), ckpt)
    art = make_toy_artifact(tmp_path / "toy", image_size=(96, 128), patch=16, dim=32)
    report = tmp_path / "report"
    args = ["eval", str(ckpt), str(art), "--seg-data", str(data / "ade"), "--report", str(report)]
    assert main([*args, "--seg-size", "192", "--floor-seeds", "1"]) == 0
    rows = {
        m.get("name", m.get("model")): m for m in json.loads((report / "results.json").read_text())["models"]
    }
    # the 96x128 images at short side 192: 192 x 256 for the checkpoint and the floors; the artifact keeps its
    assert rows["vit.pt"]["seg"]["input_size"] == [192, 256]
    assert rows["raw pixels"]["seg"]["input_size"] == [192, 256]
    assert rows["random init (1 seeds)"]["seeds"][0]["seg"]["input_size"] == [192, 256]
    assert rows["toy"]["seg"]["input_size"] == [96, 128]
    # the oracle is the truth on the 12x16 grid the probe scores at, not the images' own 6x8
    oracle = rows["oracle (truth at the patch grid)"]["seg"]["linear"]["miou"]
    assert main(["eval", str(ckpt), "--seg-data", str(data / "ade"), "--report", str(tmp_path / "r2")]) == 0
    small = json.loads((tmp_path / "r2" / "results.json").read_text())["models"]
    assert small[0]["seg"]["input_size"] == [96, 128]
    assert oracle > small[-1]["seg"]["linear"]["miou"]
    capsys.readouterr()
    assert main([*args, "--seg-size", "8", "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["edge-vsd eval: error: --seg-size 8: must be at least 16"]


def test_ablate_tiny_and_resumable(data, tmp_path, capsys):
    args = [
        "ablate",
        "--video",
        str(data / "videos" / "train-00.avi"),
        "--deltas",
        "0,3",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--img-size",
        "32",
        "--out-dim",
        "64",
        "--davis",
        str(data / "davis"),
        "--max-frames",
        "5",
        "--eval-size",
        "64",
        "--out",
        str(tmp_path / "abl"),
    ]
    assert main(args) == 0
    out = capsys.readouterr()
    rows = [line for line in out.out.splitlines() if line.startswith("| ") and "arm" not in line]
    floors = ["raw pixels", "random init (3 seeds)", "trivial", "oracle (truth at the patch grid)"]
    assert [r.split("|")[1].strip() for r in rows] == ["vsd-d0", "vsd-d3", "dino", "init", *floors]
    result = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert all(0 <= a["JF"] <= 1 for a in result["arms"])
    steps = {a["arm"]: a["steps"] for a in result["arms"] if a["method"] != "floor"}
    assert steps == {"vsd-d0": 2, "vsd-d3": 2, "dino": 2, "init": 0}
    assert " ± " in next(r for r in rows if "random init" in r)
    for png in ("accuracy_vs_delta.png", "baselines.png"):
        assert cv2.imread(str(tmp_path / "abl" / png)) is not None
    cfg = json.loads((tmp_path / "abl" / "runs" / "dino" / "config.json").read_text())
    assert cfg["method"] == "dino" and cfg["steps"] == 2
    assert main(args) == 0  # a second run skips every finished arm
    assert capsys.readouterr().err.count("skipped") == 3
    _check_merge(tmp_path, result, capsys)


def _check_merge(tmp_path: Path, result: dict, capsys) -> None:
    """`ablate --merge`: the ablation split in two (as if run apart) is united into the same table; parts
    whose settings or shared arms differ are refused, and so is an --out that holds a trained ablation."""
    shared = [a for a in result["arms"] if a["method"] in ("init", "floor")]
    parts = []
    for name, arms in (("a", ["vsd-d3", "dino"]), ("b", ["vsd-d0"])):
        mine = [a for a in result["arms"] if a["arm"] in arms]
        settings = result["settings"] | {"deltas": [a["delta"] for a in mine if a["delta"] is not None]}
        parts.append(tmp_path / f"{name}.json")
        parts[-1].write_text(json.dumps(result | {"settings": settings, "arms": mine + shared}))
    merged = tmp_path / "merged"
    assert main(["ablate", "--merge", str(parts[0]), "--merge", str(parts[1]), "--out", str(merged)]) == 0
    doc = json.loads((merged / "ablation.json").read_text())
    assert doc["arms"] == result["arms"]  # Δ order, then the baselines and the floors, each arm as it was
    assert doc["settings"]["deltas"] == [0, 3] and doc["settings"]["merged_from"] == [str(p) for p in parts]
    table = [line for line in (merged / "ablation.md").read_text().splitlines() if line.startswith("|")]
    assert table == [
        line for line in (tmp_path / "abl" / "ablation.md").read_text().splitlines() if line.startswith("|")
    ]
    assert cv2.imread(str(merged / "baselines.png")) is not None
    capsys.readouterr()

    def refused(doc: dict, *out: str) -> str:
        parts[1].write_text(json.dumps(doc))
        code = main(["ablate", "--merge", str(parts[0]), "--merge", str(parts[1]), "--out", *out])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1
        return err[0]

    b = json.loads(parts[1].read_text())
    older = {
        key: {k: v for k, v in b[key].items() if k != "probe_splits"} for key in ("settings", "eval_settings")
    }
    parts[1].write_text(
        json.dumps(b | older)
    )  # a part run before --probe-splits existed: read at its default
    assert main(["ablate", "--merge", str(parts[0]), "--merge", str(parts[1]), "--out", str(merged)]) == 0
    capsys.readouterr()
    assert "steps 3 differs from 2" in refused(b | {"settings": b["settings"] | {"steps": 3}}, str(merged))
    floors = [a | {"JF": a["JF"] + 0.1} if a["arm"] == "raw pixels" else a for a in b["arms"]]
    assert "arm raw pixels scores differently" in refused(b | {"arms": floors}, str(merged))
    before = (tmp_path / "abl" / "ablation.json").read_bytes()  # a trained ablation is never overwritten
    assert "holds a trained ablation; merge into another folder" in refused(b, str(tmp_path / "abl"))
    args = ["ablate", "--merge", str(tmp_path / "abl"), "--merge", str(parts[1])]
    assert main([*args, "--out", str(tmp_path / "abl")]) == 2
    assert (tmp_path / "abl" / "ablation.json").read_bytes() == before
    capsys.readouterr()
    args = ["ablate", "--merge", str(merged), "--merge", str(parts[0]), "--out", str(merged)]
    assert main(args) == 2 and "one of the ablations to merge" in capsys.readouterr().err
    args = ["ablate", "--merge", str(tmp_path), "--merge", str(parts[0]), "--out", str(tmp_path / "m2")]
    assert main(args) == 2 and f"{tmp_path / 'ablation.json'}: no such file" in capsys.readouterr().err


def test_probe_splits_average_the_seg_probes_and_keep_split_zero_as_published(data, tmp_path, capsys):
    """`--probe-splits N`: the linear and kNN probes (and the majority floor) are the mean over N seeded
    holdout splits, each split in the JSON; split 0 is the single-split number that eval gives by default."""
    art = make_toy_artifact(tmp_path / "toy", image_size=(96, 128), patch=16, dim=32)
    args = ["eval", str(art), "--seg-data", str(data / "ade"), "--no-floors"]
    assert main([*args, "--report", str(tmp_path / "one")]) == 0
    assert main([*args, "--report", str(tmp_path / "three"), "--probe-splits", "3"]) == 0
    one, three = (json.loads((tmp_path / r / "results.json").read_text()) for r in ("one", "three"))
    assert three["settings"]["probe_splits"] == 3 and one["settings"]["probe_splits"] == 1
    for probe, key in (("linear", "miou"), ("linear", "pixel_acc"), ("knn", "acc")):
        single, split = one["models"][0]["seg"][probe], three["models"][0]["seg"][probe]
        assert "splits" not in single and len(split["splits"][key]) == 3
        assert split["splits"][key][0] == pytest.approx(single[key])  # split 0 as published
        assert split[key] == pytest.approx(np.mean(split["splits"][key]))
        assert len(set(split["splits"][key])) > 1  # other images held out: other scores
    capsys.readouterr()
    assert main([*args, "--report", str(tmp_path / "zero"), "--probe-splits", "0"]) == 2
    assert "--probe-splits 0: must be at least 1" in capsys.readouterr().err


def test_over_splits_keeps_a_missing_score_missing():
    """A split with no score (kNN on a split without labelled patches) leaves the mean unknown, not wrong."""
    from edge_vsd.benchmarks.seg_probe import over_splits

    out = over_splits(lambda seed: {"acc": None if seed == 1 else 0.5}, 2, keys=("acc",))
    assert out["acc"] is None and out["splits"]["acc"] == [0.5, None]
    out = over_splits(lambda seed: {"acc": 0.25 * (seed + 1)}, 2, keys=("acc",))
    assert out["acc"] == pytest.approx(0.375) and out["splits"]["acc"] == [0.25, 0.5]


def test_the_majority_floor_follows_the_probe_splits():
    """The trivial row's majority class is scored on the same seeded splits as the probes."""
    from edge_vsd.benchmarks.evaluate import EvalConfig, EvalInputs, majority_answer, trivial_answers
    from edge_vsd.benchmarks.seg_probe import SegData

    labels = np.random.default_rng(0).integers(1, 4, (12, 6, 6)).astype(np.uint8)
    labels[:4] = 3  # images of one class, held out by some splits and not others
    seg = SegData(np.zeros((12, 6, 6, 3), np.uint8), labels, [str(i) for i in range(12)])
    out = trivial_answers(EvalConfig(probe_splits=3), EvalInputs(seg=seg))["seg"]["linear"]
    each = [majority_answer(labels, seed)["pixel_acc"] for seed in range(3)]
    assert out["splits"]["pixel_acc"] == pytest.approx(each) and len(set(each)) > 1
    assert out["pixel_acc"] == pytest.approx(np.mean(each))
    single = trivial_answers(EvalConfig(), EvalInputs(seg=seg))["seg"]["linear"]
    assert "splits" not in single and single["pixel_acc"] == pytest.approx(each[0])


# --- checks before any long work -----------------------------------------------------------------


def test_eval_checks_the_seg_data_layout_before_any_model_runs(data, tmp_path, capsys):
    art = make_toy_artifact(tmp_path / "toy", image_size=(96, 128), patch=16, dim=32)
    report = tmp_path / "report"
    davis = str(data / "davis")
    code = main(["eval", str(art), "--davis", davis, "--seg-data", davis, "--report", str(report)])
    err = capsys.readouterr().err.strip().splitlines()
    # one line: no "DAVIS label propagation" progress before it, so nothing ran first
    assert code == 2 and len(err) == 1 and "expected ADE20K layout" in err[0] and davis in err[0]
    assert not report.exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (nobody can write there)")
def test_eval_refuses_an_unwritable_report_folder_before_any_work(data, tmp_path, capsys):
    art = make_toy_artifact(tmp_path / "toy", image_size=(96, 128), patch=16, dim=32)
    code = main(["eval", str(art), "--davis", str(data / "davis"), "--report", "/proc/edge-vsd-eval"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "/proc/edge-vsd-eval: cannot write here (--report)" in err[0]


def test_eval_warns_about_a_truncated_video(tmp_path, caplog):
    from test_bench_support import truncated_video

    art = make_toy_artifact(tmp_path / "toy", image_size=(96, 128), patch=16, dim=32)
    video = truncated_video(tmp_path / "trunc.avi")
    assert main(["eval", str(art), "--data", str(video), "--report", str(tmp_path / "r")]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{video}: decoding stopped after")
    assert "of the 16 frames asked" in warnings[0]


def _ablate_args(data: Path, out: Path, deltas: str) -> list[str]:
    video = str(data / "videos" / "train-00.avi")  # 40 frames
    return ["ablate", "--video", video, "--deltas", deltas, "--steps", "2", "--batch-size", "4"] + [
        "--img-size", "32", "--out-dim", "64", "--davis", str(data / "davis"), "--out", str(out)
    ]  # fmt: skip


def test_ablate_refuses_a_delta_longer_than_the_videos_before_training(data, tmp_path, capsys):
    out = tmp_path / "abl"
    assert main(_ablate_args(data, out, "0,100")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train-00.avi: 40 frames, not more than delta (100 frames)" in err[0]
    assert "arm vsd-d100" in err[0]
    assert not out.exists()  # no arm trained, nothing written


def test_ablate_checks_the_labelled_data_before_training(data, tmp_path, capsys):
    out = tmp_path / "abl"
    args = _ablate_args(data, out, "0") + ["--seg-data", str(data / "davis")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected ADE20K layout" in err[0] and not out.exists()


def test_a_failing_arm_surfaces_trains_error(data, tmp_path):
    # run_arm alone (no preflight): train refuses the delta and leaves no run folder; the timing record
    # must not be written into that missing folder, which would hide train's error behind another one
    from edge_vsd.benchmarks.ablate import AblateConfig, Arm, run_arm

    from edge_vsd.errors import InputError

    cfg = AblateConfig(
        video=[str(data / "videos" / "train-00.avi")],
        out=str(tmp_path / "abl"),
        steps=2,
        batch_size=4,
        img_size=32,
        out_dim=64,
    )
    with pytest.raises(InputError, match="not more than delta"):
        run_arm(cfg, Arm("vsd-d100", "vsd", 100), log=lambda m: None)
    assert not (tmp_path / "abl" / "runs" / "vsd-d100").exists()


def test_ablate_seeds_give_mean_and_spread_and_each_seed_with_a_shared_recipe(data, tmp_path, capsys):
    args = [
        "ablate",
        "--video",
        str(data / "videos" / "train-00.avi"),
        "--deltas",
        "3",
        "--baselines",
        "init",
    ]
    args += ["--steps", "2", "--batch-size", "4", "--img-size", "32", "--out-dim", "64", "--seeds", "2"]
    args += [
        "--davis",
        str(data / "davis"),
        "--max-frames",
        "5",
        "--eval-size",
        "64",
        "--seg-data",
        str(data / "ade"),
        "--seg-size",
        "64",
        "--out",
        str(tmp_path / "a"),
    ]
    recipe = tmp_path / "recipe.json"  # the recipe every arm trains with; the arm's own delta still wins
    recipe.write_text(json.dumps({"koleo": 0.5, "delta": 7, "eval_every": 1, "eval_data": str(data)}))
    assert main([*args, "--config", str(recipe)]) == 0
    result = json.loads((tmp_path / "a" / "ablation.json").read_text())
    assert result["settings"]["recipe"]["koleo"] == 0.5
    # the probe scored every model at --seg-size's short side (the 96x128 images at 64: 64x64)
    scored = json.loads((tmp_path / "a" / "eval" / "results.json").read_text())["models"]
    assert {tuple(m["seg"]["input_size"]) for m in scored if "input_size" in m.get("seg", {})} == {(64, 64)}
    assert result["settings"]["seg_size"] == 64
    for run in ("vsd-d3", "vsd-d3-s1"):
        trained = json.loads((tmp_path / "a" / "runs" / run / "config.json").read_text())
        assert trained["koleo"] == 0.5 and trained["delta"] == 3
    vsd = next(a for a in result["arms"] if a["arm"] == "vsd-d3")
    # the recipe's in-training evaluation: each seed's curve from step 0, drawn as the learning curves
    assert [[row["step"] for row in s["curve"]] for s in vsd["seeds"]] == [[0, 1, 2]] * 2
    assert 0 <= vsd["seeds"][0]["curve"][0]["teacher"]["JF"] <= 1
    assert cv2.imread(str(tmp_path / "a" / "learning_curves.png")) is not None
    vsd = next(a for a in result["arms"] if a["arm"] == "vsd-d3")
    assert [s["seed"] for s in vsd["seeds"]] == [0, 1]
    assert vsd["JF"] == pytest.approx(np.mean([s["JF"] for s in vsd["seeds"]]))
    assert vsd["spread"]["JF"]["std"] == pytest.approx(np.std([s["JF"] for s in vsd["seeds"]], ddof=1))
    assert (tmp_path / "a" / "runs" / "vsd-d3" / "checkpoint.pt").is_file()
    assert (tmp_path / "a" / "runs" / "vsd-d3-s1" / "checkpoint.pt").is_file()
    init = next(a for a in result["arms"] if a["arm"] == "init")
    assert init["spread"]["JF"]["std"] > 0  # two random starts differ
    out = capsys.readouterr().out
    md = (tmp_path / "a" / "ablation.md").read_text()
    assert "seeds 0-1 (mean ± std)" in md
    assert "J&F at 64 px short side, probe at 64 px" in md
    # like the scores, the md's loss and time are per run over the seeds, not seed 0's loss and the seeds' sum
    losses = [s["final"]["loss"] for s in vsd["seeds"]]
    row = next(line for line in md.splitlines() if line.startswith("| vsd-d3 |")).split(" | ")
    assert row[-2:] == [
        f"{np.mean(losses):.3f} ± {np.std(losses, ddof=1):.3f}",
        f"{np.mean([s['seconds'] for s in vsd['seeds']]):.0f} |",
    ]
    assert f"{vsd['JF']:.3f} ± {vsd['spread']['JF']['std']:.3f}" in out
    # the region probe's column: each seed's score and their mean, the random inits' floor with its spread
    regions = [s["region"] for s in vsd["seeds"]]
    assert all(0 <= r <= 1 for r in regions) and vsd["region"] == pytest.approx(np.mean(regions))
    assert "| region bal. acc |" in md and f"{vsd['region']:.3f} ± " in row[9]
    floor = next(a for a in result["arms"] if a["arm"] == "random init (3 seeds)")
    assert floor["spread"]["region"]["n"] == 3 and floor["region"] is not None


def test_correspondence_table_has_pixels_random_inits_and_chance(tmp_path, synthetic_video, capsys):
    """The quickstart's quality stage: warp + lighting correspondence beside its floors."""
    import torch

    from edge_vsd.model import build_vit

    torch.manual_seed(0)
    torch.save(build_vit("vit_tiny", 64).state_dict(), tmp_path / "vit.pt")
    args = ["eval", str(tmp_path / "vit.pt"), "--data", str(synthetic_video), "--floor-seeds", "2"]
    assert main([*args, "--report", str(tmp_path / "r")]) == 0
    doc = json.loads((tmp_path / "r" / "results.json").read_text())
    rows = {m["name"]: m for m in doc["models"]}
    model = rows["vit.pt"]["correspondence"]
    assert model["lighting"] and 0 < model["chance"] < model["corr_acc"] <= 1
    assert rows["trivial"]["correspondence"]["corr_acc"] == model["chance"]
    spread = rows["random init (2 seeds)"]["spread"]["corr_acc"]
    assert spread["n"] == 2 and spread["values"][0] == pytest.approx(model["corr_acc"])
    assert 0 <= rows["raw pixels"]["correspondence"]["corr_acc"] <= 1
