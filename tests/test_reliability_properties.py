"""Property tests (hypothesis): preprocessing takes frames of any size, 1/3/4 channels, uint8 or uint16 and
gives the right shapes, or the one-line error for anything else; manifest parsing gives the one-line error
for every missing or mistyped field, and never another exception."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import edge_vsd.runtimes as rt
import numpy as np
import pytest
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.manifest import (
    DIGEST_KEY,
    InputSpec,
    canonical_bytes,
    manifest_digest,
    read_manifest,
)
from edge_vsd.runtimes.preprocess import Preprocessor
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from toy_artifact import make_toy_artifact

SPEC = InputSpec(
    name="image",
    image_size=(32, 48),
    color="RGB",
    scale=1 / 255,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    resize="stretch",
    interpolation="area",
    dtype="float32",
    batch=None,
)
PRE = Preprocessor(SPEC)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _frame(seed: int, h: int, w: int, channels: int | None, dtype) -> np.ndarray:
    shape = (h, w) if channels is None else (h, w, channels)
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, endpoint=True, dtype=dtype)


def _one_line(exc: BaseException) -> None:
    assert isinstance(exc, RuntimeInputError), type(exc)
    assert str(exc) and "\n" not in str(exc)


@FAST
@given(
    h=st.integers(1, 400),
    w=st.integers(1, 400),
    channels=st.sampled_from([None, 1, 3, 4]),
    dtype=st.sampled_from([np.uint8, np.uint16]),
    seed=st.integers(0, 2**32 - 1),
)
def test_preprocessing_accepts_any_size_channels_and_depth(h, w, channels, dtype, seed):
    frame = _frame(seed, h, w, channels, dtype)
    x = PRE(frame)
    assert x.shape == (1, 3, 32, 48) and x.dtype == np.float32 and np.isfinite(x).all()
    lo = (0 - max(SPEC.mean)) / min(SPEC.std)
    hi = (1 - min(SPEC.mean)) / min(SPEC.std)
    assert lo - 1e-5 <= x.min() and x.max() <= hi + 1e-5
    if dtype == np.uint16:  # the same as its 8-bit rounding
        as8 = ((frame.astype(np.uint32) + 128) // 257).astype(np.uint8)
        np.testing.assert_array_equal(x, PRE(as8))
    if channels == 4:  # alpha is dropped, colour kept
        np.testing.assert_array_equal(x, PRE(np.ascontiguousarray(frame[..., :3])))


@FAST
@given(
    n=st.integers(1, 4),
    h=st.integers(1, 120),
    w=st.integers(1, 120),
    channels=st.sampled_from([1, 3, 4]),
    dtype=st.sampled_from([np.uint8, np.uint16]),
)
def test_preprocessing_batches_and_lists(n, h, w, channels, dtype):
    frames = np.stack([_frame(i, h, w, channels, dtype) for i in range(n)])  # (N, H, W, C)
    assert PRE(frames).shape == (n, 3, 32, 48)
    np.testing.assert_array_equal(PRE(list(frames)), PRE(frames))


@FAST
@given(
    shape=st.one_of(
        st.tuples(st.integers(1, 3), st.integers(1, 30), st.integers(1, 30), st.sampled_from([2, 5, 6])),
        st.lists(st.integers(0, 20), min_size=2, max_size=4).filter(lambda s: 0 in s),  # an empty axis
        st.lists(st.integers(1, 4), min_size=5, max_size=6),  # 5-D and more
        st.tuples(st.integers(0, 30)),  # 1-D
    ),
    dtype=st.sampled_from([np.uint8, np.uint16]),
)
def test_preprocessing_bad_shapes_give_one_line(shape, dtype):
    """(H, W, C) with C not 1/3/4 is a batch of gray frames, so bad channels are tested on (N, H, W, C)."""
    with pytest.raises(RuntimeInputError) as err:
        PRE(np.zeros(shape, dtype))
    _one_line(err.value)


@FAST
@given(dtype=st.sampled_from([np.float32, np.float64, np.int8, np.int16, np.int32, np.uint32, np.bool_]))
def test_preprocessing_other_dtypes_give_one_line(dtype):
    with pytest.raises(RuntimeInputError, match="uint8 or uint16") as err:
        PRE(np.zeros((20, 30, 3), dtype))
    _one_line(err.value)


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> Path:
    return make_toy_artifact(tmp_path_factory.mktemp("art") / "art", image_size=(32, 32))


@FAST
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    channels=st.sampled_from([None, 1, 3, 4]),
    dtype=st.sampled_from([np.uint8, np.uint16]),
)
def test_encoder_gives_the_manifests_shapes_for_any_frame(art, h, w, channels, dtype):
    with rt.load(art) as enc:
        feats = enc(_frame(h * w, h, w, channels, dtype))
    assert feats.cls.shape == (1, 32) and feats.patches.shape == (1, 2, 2, 32)
    assert feats.cls.dtype == np.float32 and np.isfinite(feats.patches).all()


# -- manifest parsing ------------------------------------------------------------------------------------

# Everything runtimes read from a manifest: removing any of these must be refused.
REQUIRED = [
    ("schema_version",),
    ("model",),
    ("model", "image_size"),
    ("model", "patch_size"),
    ("input",),
    *(("input", k) for k in ("name", "layout", "dtype", "color", "scale", "mean", "std", "resize")),
    ("input", "interpolation"),
    ("outputs",),
    ("outputs", "cls"),
    ("outputs", "cls", "name"),
    ("outputs", "patches"),
    ("outputs", "patches", "name"),
    ("files",),
    ("files", "encoder.onnx"),
    ("files", "encoder.onnx", "sha256"),
    (DIGEST_KEY,),
]
# Values of the wrong type (or out of range) for every field.
WRONG = [None, "", "x", -1, 0, 1.5, float("nan"), True, [], [1], {}, {"a": 1}]


def _paths(obj, prefix=()):
    """Every key path in a JSON object."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))


def _edit(manifest: dict, path: tuple, value=None, delete: bool = False) -> dict:
    m = copy.deepcopy(manifest)
    node = m
    for k in path[:-1]:
        node = node[k]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return m


def _write_signed(art: Path, manifest: dict, sign: bool = True) -> None:
    """Write with a matching digest (unless the digest itself is the field under test): the parser's field
    checks, not the integrity check, must catch the problem."""
    body = dict(manifest)
    if sign and DIGEST_KEY in body:
        body = {k: v for k, v in body.items() if k != DIGEST_KEY}
        body[DIGEST_KEY] = manifest_digest(body)
    (art / "manifest.json").write_bytes(canonical_bytes(body))


@pytest.fixture(scope="module")
def scratch(art, tmp_path_factory) -> tuple[Path, dict]:
    copy_dir = Path(shutil.copytree(art, tmp_path_factory.mktemp("scratch") / "art"))
    return copy_dir, json.loads((art / "manifest.json").read_text())


@pytest.mark.parametrize("path", REQUIRED, ids=[".".join(p) for p in REQUIRED])
def test_every_missing_required_field_is_one_line(scratch, path):
    art, manifest = scratch
    _write_signed(art, _edit(manifest, path, delete=True))
    with pytest.raises(RuntimeInputError) as err:
        read_manifest(art)
    _one_line(err.value)
    assert str(art / "manifest.json") in str(err.value)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_mistyped_field_is_refused_or_harmless(scratch, data):
    art, manifest = scratch
    path = data.draw(st.sampled_from(sorted(_paths(manifest), key=str)))
    value = data.draw(st.sampled_from(WRONG))
    edited = _edit(manifest, path, value)
    _write_signed(art, edited, sign=path != (DIGEST_KEY,))
    try:
        read_manifest(art)
    except RuntimeInputError as exc:
        _one_line(exc)
        return
    except Exception as exc:  # noqa: BLE001 - the property: nothing but the one-line error
        raise AssertionError(f"{'.'.join(path)} = {value!r}: {type(exc).__name__}: {exc}") from exc
    try:  # accepted by the parser: loading and running must then work or fail with the one-line error
        with rt.load(art) as enc:
            enc(np.zeros((40, 50, 3), np.uint8))
    except RuntimeInputError as exc:  # e.g. an input name the graph does not have
        _one_line(exc)
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{'.'.join(path)} = {value!r}: {type(exc).__name__}: {exc}") from exc
    still_valid = path == ("input", "scale") and value == 1.5  # any positive scale is a valid one
    assert path not in REQUIRED or still_valid, f"{'.'.join(path)} = {value!r} was accepted and ran"


@FAST
@given(cut=st.integers(0, 10_000))
def test_any_truncation_is_one_line(scratch, cut):
    art, manifest = scratch
    raw = canonical_bytes(manifest)
    assume(cut < len(raw))
    (art / "manifest.json").write_bytes(raw[:cut])
    with pytest.raises(RuntimeInputError) as err:
        read_manifest(art)
    _one_line(err.value)
