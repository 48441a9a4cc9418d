"""Fidelity gate: INT8/fp16 features must stay within `threshold` cosine of the fp32 model's."""

from __future__ import annotations

from edge_vsd.errors import InputError


class GateFailed(InputError):
    """The exported model is too far from its reference; nothing is written."""


def passes(metrics: dict[str, float], threshold: float) -> bool:
    """Mean CLS cosine and mean patch cosine both >= threshold."""
    return metrics["cls_cosine"] >= threshold and metrics["patch_cosine"] >= threshold


def summary(metrics: dict[str, float]) -> str:
    return (
        f"CLS cosine {metrics['cls_cosine']:.5f} (min {metrics['cls_cosine_min']:.5f}), "
        f"patch cosine {metrics['patch_cosine']:.5f} (min {metrics['patch_cosine_min']:.5f}), "
        f"max abs error {metrics['max_abs_error']:.4g} on {metrics['frames']} held-out frames"
    )


def check(metrics: dict[str, float], threshold: float, what: str) -> None:
    """Raise GateFailed with the numbers when `metrics` miss the gate."""
    if not passes(metrics, threshold):
        raise GateFailed(f"{what} misses the fidelity gate {threshold}: {summary(metrics)}; nothing written")
