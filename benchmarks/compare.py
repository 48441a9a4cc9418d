"""`--compare OLD.json NEW.json`: flag slowdowns, accuracy drops and newly failing artifacts (CI on a
device)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from edge_vsd.benchmarks import SCHEMA, SCHEMA_VERSION
from edge_vsd.runtimes.errors import RuntimeInputError

log = logging.getLogger(__name__)

ACCURACY_KEYS = ("cls_cosine", "patch_cosine", "corr_acc", "knn_agreement")


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and check a results.json written by `edge-vsd bench`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuntimeInputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RuntimeInputError(f"{path}: not a readable results.json ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise RuntimeInputError(f"{path}: not an edge-vsd bench results file (schema {SCHEMA!r} expected)")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise RuntimeInputError(
            f"{path}: results schema_version {data.get('schema_version')!r} is not supported"
        )
    if not isinstance(data.get("artifacts"), list):
        raise RuntimeInputError(f"{path}: has no 'artifacts' list")
    return data


def _metrics(a: dict[str, Any]) -> dict[str, float | None]:
    acc = a.get("accuracy") or {}
    out = {k: acc.get(k) for k in ACCURACY_KEYS}
    out["seg_miou"] = (a.get("seg") or {}).get("miou")
    return out


def compare(
    old: dict[str, Any], new: dict[str, Any], max_slowdown: float = 1.10, max_accuracy_drop: float = 0.005
) -> tuple[list[str], list[str]]:
    """(regressions, notes): one line each. Artifacts are matched by name; p50 latency ratios and absolute
    accuracy drops are checked; an artifact that failed or went missing in NEW is a regression."""
    regressions: list[str] = []
    notes: list[str] = []
    old_by = {a["name"]: a for a in old["artifacts"]}
    new_by = {a["name"]: a for a in new["artifacts"]}
    for name, o in old_by.items():
        n = new_by.get(name)
        if n is None:
            regressions.append(f"{name}: missing from the new results")
            continue
        if n["status"] == "failed" and o["status"] != "failed":
            regressions.append(f"{name}: now failed ({n.get('reason')})")
            continue
        if n["status"] == "fails-gate" and o["status"] == "ok":
            regressions.append(f"{name}: now fails the fidelity gate ({n.get('reason')})")
        ol, nl = (o.get("latency") or {}).get("p50_ms"), (n.get("latency") or {}).get("p50_ms")
        if ol and nl:
            ratio = nl / ol
            line = f"{name}: p50 {ol:.3f} -> {nl:.3f} ms (x{ratio:.3f}, limit x{max_slowdown:.2f})"
            (regressions if ratio > max_slowdown else notes).append(line)
        om, nm = _metrics(o), _metrics(n)
        for key, ov in om.items():
            nv = nm.get(key)
            if ov is None:
                continue
            if nv is None:
                regressions.append(f"{name}: {key} was {ov:.4f}, now not measured")
            elif ov - nv > max_accuracy_drop:
                regressions.append(
                    f"{name}: {key} {ov:.4f} -> {nv:.4f} (drop {ov - nv:.4f} > {max_accuracy_drop})"
                )
    for name in new_by.keys() - old_by.keys():
        notes.append(f"{name}: new artifact, nothing to compare")
    return regressions, notes


SETTING_KEYS = ("batch", "threads", "backend", "frames", "corr_pairs", "homography_strength", "seed")
DATA_KEYS = ("kind", "source", "sha256", "frames", "size")


def _get(doc: Any, *keys: str) -> Any:
    """doc[k1][k2]..., None where a level is missing or not a mapping."""
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def _show(v: Any) -> str:
    if isinstance(v, str) and len(v) == 64:
        return v[:12]  # a sha256: enough to tell two files apart
    return "none" if v is None else json.dumps(v) if isinstance(v, (dict, list)) else str(v)


def setting_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One entry per setting the two runs differ in (models, data, threads, reference, machine): their
    numbers then compare unlike runs, whatever the artifacts' names say."""
    out = []
    old_by = {a.get("name"): a for a in old["artifacts"]}
    for a in new["artifacts"]:
        o = old_by.get(a.get("name"))
        if o is not None and (o.get("model") or {}) != (a.get("model") or {}):
            out.append(f"{a['name']}: model {_show(o.get('model'))} -> {_show(a.get('model'))}")
    for key in DATA_KEYS:
        ov, nv = _get(old, "settings", "data", key), _get(new, "settings", "data", key)
        if ov != nv:
            out.append(f"data {key}: {_show(ov)} -> {_show(nv)}")
    for key in SETTING_KEYS:
        ov, nv = _get(old, "settings", key), _get(new, "settings", key)
        if ov != nv:
            out.append(f"{key}: {_show(ov)} -> {_show(nv)}")
    for what, keys in (
        ("reference", ("reference", "name")),
        ("reference kind", ("reference", "kind")),
        ("CPU", ("fingerprint", "cpu", "model")),
        ("CPU logical cores", ("fingerprint", "cpu", "logical_cpus")),
        ("CPU threads used", ("fingerprint", "cpu", "threads_used")),
        ("board", ("fingerprint", "jetson", "board")),
    ):
        ov, nv = _get(old, *keys), _get(new, *keys)
        if ov != nv:
            out.append(f"{what}: {_show(ov)} -> {_show(nv)}")
    # library versions are left out: a new engine release is what a comparison is often run to judge
    return out


def run_compare(
    old_path: str | Path, new_path: str | Path, max_slowdown: float, max_accuracy_drop: float
) -> int:
    """Print the comparison; 1 when anything regressed, 0 otherwise."""
    if max_slowdown < 1.0:
        raise RuntimeInputError(f"--max-slowdown {max_slowdown} must be >= 1.0 (a ratio of p50 latencies)")
    if max_accuracy_drop < 0:
        raise RuntimeInputError(f"--max-accuracy-drop {max_accuracy_drop} must be >= 0")
    old, new = load_results(old_path), load_results(new_path)
    differences = setting_differences(old, new)
    if differences:
        log.warning(
            "%s and %s were measured under different settings, so they compare unlike runs: %s",
            old_path,
            new_path,
            "; ".join(differences),
        )
    regressions, notes = compare(old, new, max_slowdown, max_accuracy_drop)
    for line in notes:
        print(f"  ok   {line}")
    for line in regressions:
        print(f"  FAIL {line}")
    print(f"{len(regressions)} regression(s): {old_path} -> {new_path}")
    return 1 if regressions else 0
