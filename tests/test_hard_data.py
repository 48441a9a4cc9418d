"""The hard synthetic set: its nuisance factors are present, and its classes are shapes, not colours."""

import json

import cv2
import numpy as np

from edge_vsd.data.synthetic_hard import HARD_CLASSES, nuisance, render_hard


def test_nuisance_changes_light_and_adds_noise_blur_and_jpeg():
    flat = np.full((64, 64, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    light = {"brightness": 0.1, "hue": 0.0, "contrast": 1.0, "wb": [1.0, 1.0, 1.0], "gamma": 1.0}
    noisy = nuisance(flat, rng, {**light, "noise": 6.0, "blur": 0.0, "jpeg": 95})
    assert abs(noisy.mean() - (128 + 25.5)) < 3 and noisy.std() > 3  # brighter, and grainy
    blurred = nuisance(flat, rng, {**light, "noise": 6.0, "blur": 1.5, "jpeg": 95})
    assert blurred.std() < noisy.std() / 2  # blur takes most of the grain away
    tinted = nuisance(flat, rng, {**light, "wb": [1.2, 1.0, 0.8], "noise": 0.0, "blur": 0.0, "jpeg": 95})
    b, g, r = tinted.reshape(-1, 3).mean(0)
    assert b > g + 10 > r + 20  # white balance moved the channels apart


def test_hard_scenes_drift_in_light_and_classes_are_shapes():
    frames, ids, classes = render_hard(60, 96, 128, seed=3, n_obj=6)
    assert frames.shape == (60, 96, 128, 3) and set(np.unique(classes)) <= set(HARD_CLASSES)
    assert len(np.unique(ids)) > 3 and len(np.unique(classes)) > 2
    # per-frame light: the whole frame's brightness drifts over time
    assert frames.reshape(60, -1).mean(1).std() > 2
    # one class, many looks: instances of the same shape differ in colour
    means = {}
    for k in np.unique(ids[0])[1:]:
        mask = ids[0] == k
        if mask.sum() > 30:
            means.setdefault(int(np.bincount(classes[0][mask]).argmax()), []).append(frames[0][mask].mean(0))
    spread = [np.abs(np.subtract(*m[:2])).max() for m in means.values() if len(m) >= 2]
    assert not spread or max(spread) > 10
    # the same object's colour drifts over time (hue drift and light)
    k = int(np.bincount(ids[0][ids[0] > 0]).argmax())
    first, last = frames[0][ids[0] == k].mean(0), frames[-1][ids[-1] == k].mean(0)
    assert np.abs(first - last).max() > 5


def test_hard_backgrounds_draw_no_shapes_of_their_own():
    # the labelled discs, squares and triangles must be the only ones: a flat-filled shape in the texture
    # (9 x 9 windows of almost no contrast; 9-12% of the background when the textures drew 60 shapes) would
    # be a disc or square that the probe must call background
    frames, _, classes = render_hard(60, 96, 128, seed=4, n_obj=6)
    flat = []
    for t in range(0, 60, 6):
        g = frames[t].astype(np.float32).mean(-1)
        mu = cv2.blur(g, (9, 9))
        sd = np.sqrt(np.maximum(cv2.blur(g * g, (9, 9)) - mu * mu, 0))
        flat.append(np.mean(sd[classes[t] == 1] < 4))
    assert np.mean(flat) < 0.03, np.mean(flat)


def test_hard_objects_stand_out_by_grain_in_one_frame():
    # a single-frame probe can only find what one frame shows: inside objects the fine detail (mean absolute
    # Laplacian) must be well above the background's. Version 2 (the background's grain) measured 1.3-1.9x
    # here and a balanced probe found its objects barely above chance; version 3 measures 2.5-6.6x
    frames, _, classes = render_hard(60, 96, 128, seed=4, n_obj=6)
    ratios = []
    kernel = np.ones((5, 5), np.uint8)
    for t in range(0, 60, 6):
        grey = cv2.cvtColor(frames[t], cv2.COLOR_BGR2GRAY).astype(np.float32)
        lap = np.abs(cv2.Laplacian(grey, cv2.CV_32F))
        inside = cv2.erode((classes[t] > 1).astype(np.uint8), kernel).astype(bool)
        outside = cv2.erode((classes[t] == 1).astype(np.uint8), kernel).astype(bool)
        if inside.sum() > 50:
            ratios.append(lap[inside].mean() / lap[outside].mean())
    assert len(ratios) >= 5 and np.median(ratios) > 2.2, ratios


def test_make_data_hard_records_which_generator_made_it(tmp_path):
    from edge_vsd.data.make_data import DataConfig, make_data
    from edge_vsd.data.synthetic_hard import HARD_VERSION

    cfg = DataConfig(out=str(tmp_path / "h"), sequences=1, frames=4, ade_images=4, videos=0, hard=True)
    cfg.height, cfg.width = 64, 96
    out = make_data(cfg)
    record = json.loads((out / "config.json").read_text())
    assert record["hard"] and record["hard_version"] == HARD_VERSION == 3
    assert json.loads((out / "ade" / "classes.json").read_text())["2"] == "disc"
    easy = make_data(DataConfig(out=str(tmp_path / "e"), sequences=1, frames=4, ade_images=4, videos=0))
    assert "hard_version" not in json.loads((easy / "config.json").read_text())
