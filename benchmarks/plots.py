"""PNG plots for the report (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both axes (lower x = latency, higher y = accuracy),
    ordered by x."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def latency_plot(rows: list[dict[str, Any]]) -> bytes | None:
    """Horizontal bars at p50 per artifact with p10-p90 whiskers."""
    rows = [r for r in rows if r.get("latency")]
    if not rows:
        return None
    names = [r["name"] for r in rows]
    p50 = [r["latency"]["p50_ms"] for r in rows]
    lo = [r["latency"]["p50_ms"] - r["latency"]["p10_ms"] for r in rows]
    hi = [r["latency"]["p90_ms"] - r["latency"]["p50_ms"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(rows) + 1.6))
    colors = [
        "#c0392b" if r["status"] == "failed" else "#e67e22" if r["status"] == "fails-gate" else "#2e86c1"
        for r in rows
    ]
    ax.barh(range(len(rows)), p50, xerr=[lo, hi], color=colors, capsize=4, height=0.6)
    ax.set_yticks(range(len(rows)), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"latency per batch of {rows[0]['latency']['batch']} (ms): p50, whiskers p10-p90")
    ax.grid(axis="x", alpha=0.3)
    for i, v in enumerate(p50):
        ax.text(v, i, f" {v:.2f}", va="center", ha="left", fontsize=8)
    return _png(fig)


def accuracy_metric(rows: list[dict[str, Any]]) -> tuple[str, str] | None:
    """Which accuracy to plot: patch cosine vs the reference where present, else correspondence accuracy."""
    for key, label in (
        ("patch_cosine", "patch cosine vs reference"),
        ("cls_cosine", "CLS cosine vs reference"),
        ("corr_acc", "patch correspondence accuracy"),
    ):
        if (
            sum((r.get("accuracy") or {}).get(key) is not None and r.get("latency") is not None for r in rows)
            >= 1
        ):
            return key, label
    return None


def accuracy_latency_plot(rows: list[dict[str, Any]]) -> bytes | None:
    """Scatter of accuracy vs p50 latency, the Pareto front joined and its points ringed."""
    metric = accuracy_metric(rows)
    if metric is None:
        return None
    key, label = metric
    rows = [r for r in rows if r.get("latency") and (r.get("accuracy") or {}).get(key) is not None]
    pts = [(r["latency"]["p50_ms"], r["accuracy"][key]) for r in rows]
    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    colors = ["#e67e22" if r["status"] == "fails-gate" else "#2e86c1" for r in rows]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=40, c=colors, zorder=3)
    ax.plot(
        [pts[i][0] for i in front],
        [pts[i][1] for i in front],
        "--",
        color="#27ae60",
        zorder=2,
        label="Pareto front",
    )
    ax.scatter(
        [pts[i][0] for i in front],
        [pts[i][1] for i in front],
        s=160,
        facecolors="none",
        edgecolors="#27ae60",
        linewidths=2,
        zorder=4,
    )
    for r, (x, y) in zip(rows, pts, strict=True):
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("p50 latency (ms)")
    ax.set_ylabel(label)
    ax.ticklabel_format(axis="y", useOffset=False)  # cosines near 1: show 0.99996, not an offset
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.12)  # room for the labels next to the points
    ax.legend(loc="best")
    return _png(fig)
