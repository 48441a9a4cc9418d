"""The VSD loss: DINO cross-entropy on CLS tokens across frames + patch-wise next-frame cross-entropy."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class VSDLoss(nn.Module):
    """Global term: teacher CLS of one frame vs student CLS of the other (both directions, plus local crops).
    Dense term: predicted student patches of frame t vs teacher patches of frame t+delta.
    Loss = (global + w * dense) / (1 + w): w = 1 is their mean, w = 0 is DINO's CLS-only loss.
    Teacher outputs are centred (one center per term) and sharpened by the scheduled temperature, or
    (`centering="sinkhorn"`, as DINOv2) turned into an equipartition over the prototypes per batch."""

    def __init__(
        self,
        out_dim: int,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        dense_weight: float = 1.0,
        centering: str = "ema",
    ):
        super().__init__()
        self.student_temp, self.center_momentum = student_temp, center_momentum
        self.dense_weight, self.sinkhorn = dense_weight, centering == "sinkhorn"
        self.max_entropy = math.log(out_dim)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.register_buffer("patch_center", torch.zeros(1, out_dim))
        # DINO starts the centers at zero, so the first steps see an un-centred, over-confident teacher and
        # the loss first climbs while the centers catch up. Starting them at the first batch's mean skips
        # that transient; from then on they move by EMA as in DINO.
        self.register_buffer("centers_ready", torch.zeros((), dtype=torch.bool))
        # sums of teacher outputs over the micro-batches of one optimizer step; centers move once per step
        self._sums = {"center": torch.zeros(out_dim), "patch_center": torch.zeros(out_dim)}
        self._counts = {"center": 0, "patch_center": 0}

    def forward(
        self,
        student_cls: list[torch.Tensor],
        teacher_cls: list[torch.Tensor],
        student_patches: torch.Tensor | None,
        teacher_patches: torch.Tensor | None,
        teacher_temp: float,
        patch_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """student_cls: logits per view [frame t, frame t+delta, locals...]; teacher_cls: [t, t+delta];
        student_patches: (B, N, K) predicted logits of frame t+delta; teacher_patches: (B, N, K); both
        None without the dense term; `patch_mask` (B, N): score the dense term on these patches only.
        Stats: the terms and teacher entropies (nats), as 0-d tensors that `read_stats` brings to the host
        in one transfer (each `.item()` would stall a GPU)."""
        if not self.centers_ready:
            self._init_centers(torch.cat(teacher_cls).detach().float(), teacher_patches)
        with torch.autocast(teacher_cls[0].device.type, enabled=False):  # float32, whatever the step runs in
            t_logits = [(t.detach().float() - self.center) / teacher_temp for t in teacher_cls]
            if self.sinkhorn:
                raw = torch.cat([t.detach().float() for t in teacher_cls]) / teacher_temp
                t_probs = list(sinkhorn_knopp(raw).chunk(len(teacher_cls)))
            else:
                t_probs = [F.softmax(z, dim=-1) for z in t_logits]
            s_logp = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_cls]
            terms = [
                _cross_entropy(tp, s_logp[v])
                for iq, tp in enumerate(t_probs)
                for v in range(len(s_logp))
                if v != iq
            ]
            loss_global = torch.stack(terms).mean()
            with torch.no_grad():
                entropy = torch.stack(
                    [_entropy(z, p, self.sinkhorn) for z, p in zip(t_logits, t_probs)]
                ).mean()
                # entropy of the batch's mean teacher distribution in units of log(min(K, rows)): near 0
                # when one prototype takes every frame, 1 or more when each frame has its own
                rows = torch.cat(t_probs)
                mean_p = rows.mean(0)
                spread = math.log(min(rows.shape[0], rows.shape[1]))
                mean_entropy = -(mean_p * mean_p.clamp_min(1e-12).log()).sum() / max(spread, 1e-12)
                self._accumulate("center", torch.cat(teacher_cls).detach().float())
            stats = {
                "loss_global": loss_global.detach(),
                "teacher_entropy": entropy,
                "teacher_batch_spread": mean_entropy,
            }
            if student_patches is None or teacher_patches is None or self.dense_weight == 0:
                return loss_global, stats
            with torch.no_grad():
                # (B, N, K) tensors: every pass over them is memory traffic, so in place where safe
                z = (teacher_patches.float() - self.patch_center).div_(teacher_temp)
                if self.sinkhorn:
                    raw = teacher_patches.float().flatten(0, -2) / teacher_temp
                    tpp = sinkhorn_knopp(raw).view_as(z)
                else:
                    tpp = F.softmax(z, dim=-1)
            target, pred = tpp, student_patches
            if patch_mask is not None:  # iBOT: only the patches the student did not see
                target, pred = tpp[patch_mask], pred[patch_mask]
            loss_dense = _cross_entropy(target, F.log_softmax(pred.float() / self.student_temp, dim=-1))
            with torch.no_grad():
                stats.update(loss_dense=loss_dense.detach(), patch_entropy=_entropy(z, tpp, self.sinkhorn))
                self._accumulate("patch_center", teacher_patches.detach().float().flatten(0, -2))
        loss = (loss_global + self.dense_weight * loss_dense) / (1 + self.dense_weight)
        return loss, stats

    @torch.no_grad()
    def _init_centers(self, cls: torch.Tensor, patches: torch.Tensor | None) -> None:
        pairs = [(self.center, cls)]
        if patches is not None:
            pairs.append((self.patch_center, patches.detach().float().flatten(0, -2)))
        for buf, x in pairs:
            buf.copy_(_all_mean(x.sum(0), x.shape[0]).unsqueeze(0))
        self.centers_ready.fill_(True)

    def _accumulate(self, name: str, x: torch.Tensor) -> None:
        self._sums[name] = self._sums[name].to(x.device) + x.sum(0)
        self._counts[name] += x.shape[0]

    @torch.no_grad()
    def update_centers(self) -> None:
        """EMA of the centers with the batch means of this optimizer step (all-reduced across processes)."""
        for name in ("center", "patch_center"):
            if self._counts[name]:
                buf = getattr(self, name)
                mean = _all_mean(self._sums[name], self._counts[name])
                buf.mul_(self.center_momentum).add_(mean, alpha=1 - self.center_momentum)
            self._sums[name] = torch.zeros_like(self._sums[name])
            self._counts[name] = 0


def koleo(embeddings: torch.Tensor, views: int) -> torch.Tensor:
    """KoLeo regulariser (Sablayrolles et al. 2019, used by DINOv2): minus the mean log distance of each
    L2-normalised embedding to its nearest neighbour within its view's batch. It is large when the features
    of different frames coincide, which is the collapse a low-diversity video drifts into."""
    return koleo_sets(embeddings.unflatten(0, (views, -1)))


def koleo_sets(x: torch.Tensor) -> torch.Tensor:
    """KoLeo over sets of rows, (S, n, D): each row's nearest neighbour is looked for within its own set.
    With the patch tokens of each image as a set, it keeps the patches of one frame apart."""
    x = F.normalize(x.float(), dim=-1, eps=1e-8)
    with torch.no_grad():
        dots = x @ x.transpose(1, 2)
        dots.diagonal(dim1=1, dim2=2).fill_(-2.0)
        nearest = dots.argmax(dim=2, keepdim=True).expand(-1, -1, x.shape[-1])
    return -torch.log((x - x.gather(1, nearest)).norm(dim=-1) + 1e-8).mean()


def read_stats(loss: torch.Tensor, stats: dict[str, torch.Tensor]) -> dict[str, float]:
    """{"loss", **stats, "kl", "kl_dense"?} as floats, read from the device in one synchronisation."""
    values = torch.stack([loss.detach().float(), *(v.float() for v in stats.values())]).tolist()
    out = dict(zip(["loss", *stats], values))
    out["kl"] = out["loss_global"] - out["teacher_entropy"]
    if "loss_dense" in out:
        out["kl_dense"] = out["loss_dense"] - out["patch_entropy"]
    return out


def _cross_entropy(p: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_k p log q, as one dot product: no (rows, K) product is written."""
    return -torch.dot(p.reshape(-1), logq.reshape(-1)) / (p.numel() // p.shape[-1])


def _softmax_entropy(z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of p = softmax(z) along the last axis: log p = z - logsumexp(z), so the entropy
    is logsumexp(z) - <p, z>, two reads of z and no log of p."""
    return torch.logsumexp(z, dim=-1).mean() + _cross_entropy(p, z)


def _entropy(z: torch.Tensor, p: torch.Tensor, direct: bool) -> torch.Tensor:
    """Mean entropy of the rows of p: from its logits z when p = softmax(z), else (Sinkhorn) from p."""
    if not direct:
        return _softmax_entropy(z, p)
    return -(p * p.clamp_min(1e-30).log()).sum(-1).mean()


@torch.no_grad()
def sinkhorn_knopp(logits: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """(rows, K) teacher logits -> per-row distributions whose prototypes share the batch equally (Cuturi's
    Sinkhorn-Knopp, as DINOv2's teacher): no prototype can take every row, so no collapse to one, and no
    uniform rows either. Rows and mass are summed over every process."""
    q = torch.exp(logits - logits.max()).t()  # (K, rows); the shift cancels in the normalisations
    rows = torch.tensor(float(q.shape[1]), device=q.device)
    total = q.sum()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(rows)
        dist.all_reduce(total)
    q /= total
    k = q.shape[0]
    for _ in range(iterations):
        per_proto = q.sum(1, keepdim=True)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(per_proto)
        q /= per_proto.clamp_min(1e-30) * k
        q /= q.sum(0, keepdim=True).clamp_min(1e-30) * rows
    return (q * rows).t()


def _all_mean(total: torch.Tensor, count: int) -> torch.Tensor:
    """Mean over every process of per-process sums and counts."""
    packed = torch.cat([total, total.new_tensor([float(count)])])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(packed)
    return packed[:-1] / packed[-1]
