"""What a benchmark run concludes: the artifact to ship (fastest passing the gate) and INT8 artifacts that
run slower than their fp32 sibling (same model, same size), which should not ship. A gap counts only when
every timing round of one beat every round of the other; overlapping rounds are called too close."""

from __future__ import annotations

from typing import Any

from edge_vsd.runtimes.timing import clearly_faster


def _p50(row: dict[str, Any]) -> float | None:
    return (row.get("latency") or {}).get("p50_ms")


def _timed_p50(row: dict[str, Any]) -> float:
    """The median latency of a row already known to have one."""
    p50 = _p50(row)
    assert p50 is not None
    return p50


def _rounds(row: dict[str, Any]) -> list[float]:
    """The row's per-round medians; a row from before rounds were recorded has its p50 alone."""
    lat = row.get("latency") or {}
    return list(lat.get("round_ms") or [lat["p50_ms"]])


def _same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    ma, mb = a.get("model") or {}, b.get("model") or {}
    return bool(ma.get("arch")) and ma == mb


def slower_than_fp32(rows: list[dict[str, Any]]) -> dict[str, str]:
    """name -> note for every INT8 row whose p50 exceeds the fastest fp32 sibling's: "do not ship" when
    every round says so, "too close to call" when their rounds overlap."""
    notes = {}
    for row in rows:
        if row.get("precision") != "int8" or _p50(row) is None:
            continue
        siblings = [
            r for r in rows if r.get("precision") == "fp32" and _p50(r) is not None and _same_model(r, row)
        ]
        if not siblings:
            continue
        fp32 = min(siblings, key=_timed_p50)
        if _timed_p50(row) <= _timed_p50(fp32):
            continue
        times = f"{_p50(row):.2f} vs {_p50(fp32):.2f} ms"
        notes[row["name"]] = (
            f"INT8 slower than fp32 sibling {fp32['name']} ({times}): do not ship it on this CPU"
            if clearly_faster(_rounds(fp32), _rounds(row))
            else f"INT8 slower at p50 than fp32 sibling {fp32['name']} ({times}), but their rounds overlap: "
            "too close to call; re-run bench on the idle target"
        )
    return notes


def ship(rows: list[dict[str, Any]], has_reference: bool) -> dict[str, Any] | None:
    """The fastest artifact whose fidelity was checked and passed the gate; None when none qualifies."""
    ok = [r for r in rows if r.get("status") == "ok" and _p50(r) is not None]
    if has_reference:
        ok = [r for r in ok if (r.get("accuracy") or {}).get("cls_cosine") is not None]
    if not ok:
        return None
    best = min(ok, key=_timed_p50)
    close = [r["name"] for r in ok if r is not best and not clearly_faster(_rounds(best), _rounds(r))]
    plural = "artifact" if len(ok) == 1 else "artifacts"
    why = (
        f"fastest of {len(ok)} {plural} passing the fidelity gate"
        if has_reference
        else f"fastest of {len(ok)} {plural}; no reference: fidelity not checked"
    )
    if close:
        why += f"; within round noise of {', '.join(close)}: too close to call"
    return {
        "name": best["name"],
        "backend": best.get("backend"),
        "p50_ms": _p50(best),
        "why": why,
        "too_close": close,
    }


def apply(rows: list[dict[str, Any]], has_reference: bool) -> dict[str, Any] | None:
    """Add the slower-than-fp32 notes to the rows; return the ship recommendation."""
    for name, note in slower_than_fp32(rows).items():
        next(r for r in rows if r["name"] == name).setdefault("notes", []).append(note)
    return ship(rows, has_reference)


def ship_line(results: dict[str, Any]) -> str:
    """One line for the report and stdout."""
    s = results.get("ship")
    if not s:
        return "Ship: none (no artifact passed the gate with a latency measured)"
    return f"Ship: {s['name']} ({s['backend']}, p50 {s['p50_ms']:.2f} ms; {s['why']})"
