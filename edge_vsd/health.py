"""Learning health, watched while training: a teacher that says nothing (uniform), one that says the same
thing for every frame (one prototype), and how far the EMA teacher has moved from its random start."""

from __future__ import annotations

import math

import torch
from torch import nn

TOLERANCE = 0.02  # within 2% of log K counts as uniform
STREAK = 10  # consecutive steps after warm-up before a uniform-teacher warning
# A few-prototype phase of about 10 steps at the end of warm-up is common and passes: on real footage the
# fit recipe went through one (steps 20-29 of 150) and then learned. Only a longer one is warned about.
COLLAPSE_STREAK = 30
# a batch whose mean teacher distribution has an entropy under 0.4 log(min(K, rows)): a few prototypes take
# every frame (quickstart-size runs measured 0.15-0.3 there, 1.4-1.9 before and after)
ONE_PROTOTYPE = 0.4
SHARP_TEACHER = 0.025  # the teacher temperature the uniform-teacher warning suggests
DRIFT_EVERY = 10  # steps between measurements of the teacher's distance from its initialisation


class Health:
    """Per-step checks on the loss stats; each kind of failure is warned about once, with its cause and the
    flag to change. `drift` measures the teacher backbone's relative distance from its initial weights;
    `end_init_weight` is the share of its random start the momentum schedule leaves it at the last step;
    `teacher_temp` and `koleo` are the run's, so the advice names only levers it has not pulled yet."""

    def __init__(
        self,
        max_entropy: float,
        warmup_end: int,
        teacher: nn.Module,
        end_init_weight: float = 0.0,
        teacher_temp: float = 0.04,
        koleo: float = 0.0,
    ) -> None:
        self.max_entropy, self.warmup_end, self.end_init_weight = max_entropy, warmup_end, end_init_weight
        self.teacher_temp, self.koleo = teacher_temp, koleo
        self.start = [p.detach().clone() for p in teacher.parameters()]
        self.streaks = {"uniform": 0, "one_prototype": 0}
        self.warned: set[str] = set()

    @torch.no_grad()
    def drift(self, teacher: nn.Module) -> float:
        """||teacher - its initialisation|| / ||initialisation|| over every teacher parameter."""
        now = [p.detach() for p in teacher.parameters()]
        diff = torch._foreach_sub(now, self.start)
        moved = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(diff)))
        size = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self.start)))
        return float(moved / size.clamp_min(1e-12))

    def fractions(self, stats: dict[str, float]) -> dict[str, float]:
        """Teacher entropies as a share of log K (1 = uniform)."""
        return {
            f"{k}_frac": stats[k] / self.max_entropy
            for k in ("teacher_entropy", "patch_entropy")
            if k in stats
        }

    def check(self, step: int, stats: dict[str, float], init_weight: float) -> str | None:
        """The warning to print after `step` (0-based), if one is due; None otherwise."""
        uniform_at = (1 - TOLERANCE) * self.max_entropy
        entropies = [stats[k] for k in ("teacher_entropy", "patch_entropy") if k in stats]
        signs = {
            "uniform": stats["loss"] >= uniform_at or all(e >= uniform_at for e in entropies),
            "one_prototype": stats.get("teacher_batch_spread", math.inf) < ONE_PROTOTYPE,
        }
        for kind, bad in signs.items():
            self.streaks[kind] = self.streaks[kind] + 1 if bad and step > self.warmup_end else 0
            streak = STREAK if kind == "uniform" else COLLAPSE_STREAK
            if self.streaks[kind] == streak and kind not in self.warned:
                self.warned.add(kind)
                return self._message(kind, step + 2 - streak, step + 1, stats, init_weight)
        return None

    def _message(self, kind: str, first: int, last: int, stats: dict[str, float], init_weight: float) -> str:
        if kind == "uniform":
            head = (
                f"steps {first}-{last}: loss {stats['loss']:.3f} within {TOLERANCE:.0%} of log K = "
                f"{self.max_entropy:.2f}: the teacher is uniform and the student learns nothing. "
            )
            if init_weight >= 0.05 and self.end_init_weight >= 0.05:
                return head + (
                    f"The teacher still holds {init_weight:.0%} of its random start, and the momentum "
                    f"schedule leaves it {self.end_init_weight:.0%} at the end: lower --momentum-teacher "
                    "(--schedule fit derives it from the run's length)"
                )
            where = (
                "The teacher has left its random start"
                if init_weight < 0.05
                else f"The teacher holds {init_weight:.0%} of its random start, but the schedule moves it off"
            )
            # measured: on the hard synthetic set at 64 px, 0.04 sat at 0.99 ln K and warned, 0.025 did not
            levers = []
            if self.teacher_temp > SHARP_TEACHER:
                levers.append(f"a sharper teacher (--teacher-temp {SHARP_TEACHER:g})")
            if self.koleo <= 0:
                levers.append("--koleo 1")
            levers += ["a smaller --out-dim", "another --lr", "more varied video"]
            return head + (
                f"{where}, so the temperature, the recipe or the footage is the cause: try "
                + ", ".join(levers[:-1])
                + f", or {levers[-1]}"
            )
        return (
            f"steps {first}-{last}: the teacher gives every frame the same few prototypes (batch spread "
            f"{stats['teacher_batch_spread']:.2f} of its maximum): collapse, which a uniform teacher often "
            "follows; try a lower --lr or a larger --batch-size"
        )
