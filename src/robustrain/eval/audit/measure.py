"""The audit's measurements: per-image outcomes of PGD runs (with the accuracy after every
step), input gradients, the DLR loss, transfer and black-box runs.

An image counts as broken by a PGD run when ANY iterate of the run (the random start, every
step, the final point) is misclassified: every iterate lies inside the eps-ball, so this is a
valid attack, and it turns one long run into the whole accuracy-vs-steps curve at no extra cost
(the loss callable passed to :func:`~robustrain.attacks.pgd` sees each iterate's logits).

Example:
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    >>> x, y = torch.rand(8, 3, 2, 2), torch.randint(0, 3, (8,))
    >>> run = pgd_run(net, x, y, eps=8 / 255, steps=5, seed=0)
    >>> len(run.curve), bool(run.robust.sum() <= (net(x).argmax(1) == y).sum())
    (6, True)
    >>> round(float(dlr_loss(torch.tensor([[3.0, 1.0, 0.0]]), torch.tensor([0]))), 4)
    -0.6667
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustrain.attacks import neg_margin_loss, pgd
from robustrain.attacks.functional import ce_loss

__all__ = ["PgdRun", "dlr_loss", "final_run", "gradient_health", "output_randomness", "pgd_run", "predict",
           "transfer_run"]


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Difference-of-logits-ratio loss of Croce & Hein 2020 (untargeted), per example:
    ``-(z_y - max_{i != y} z_i) / (z_(1) - z_(3) + 1e-12)`` with ``z_(k)`` the k-th largest logit.

    Invariant to shifting and scaling the logits, so a softmax saturated by large logits does
    not flatten it (CE's gradient vanishes there). Needs at least 3 classes.
    """
    z_sorted = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    is_y = F.one_hot(y, logits.shape[1]).bool()
    z_other = logits.masked_fill(is_y, float("-inf")).amax(dim=1)
    return -(z_y - z_other) / (z_sorted[:, 0] - z_sorted[:, 2] + 1e-12)


#: the losses of check 4: name -> (per-example loss to ascend, minimum class count)
LOSSES: dict[str, tuple[Callable[[Tensor, Tensor], Tensor], int]] = {
    "ce": (ce_loss, 2),
    "cw": (neg_margin_loss, 2),
    "dlr": (dlr_loss, 3),
}


def predict(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """Predicted classes of ``x`` (no gradients), on x's device."""
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)])


class _Tracker:
    """Wraps an attack loss: records, for every iterate it is called on, which images are
    misclassified so far (a host sync per step: fine for an audit)."""

    def __init__(self, loss: Callable[[Tensor, Tensor], Tensor], broken: Tensor) -> None:
        self.loss, self.broken, self.history = loss, broken, []

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        with torch.no_grad():
            self.broken |= logits.argmax(1) != y
            self.history.append(int(self.broken.sum()))
        return self.loss(logits, y)


@dataclass
class PgdRun:
    """Per-image outcome of a PGD run on all images.

    Attributes:
        robust: (N,) bool: clean-correct and no iterate misclassified.
        curve: robust accuracy after 0, 1, ..., steps steps (iterate 0 = the random start).
    """

    robust: Tensor
    curve: list[float] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return float(self.robust.float().mean()) if self.robust.numel() else 0.0


def pgd_run(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, steps: int, seed: int,
            loss: Callable[[Tensor, Tensor], Tensor] = ce_loss, alpha: float | None = None,
            candidates: Tensor | None = None, batch_size: int = 256) -> PgdRun:
    """Linf PGD (uniform start, step ``alpha`` = eps / 4 by default) on the ``candidates``
    (default: the clean-correct images); the others count as not robust.

    Returns the per-image outcome and the accuracy after each step (over all N images).
    """
    n = x.shape[0]
    clean = predict(model, x, batch_size) == y
    todo = clean if candidates is None else candidates & clean
    robust = torch.zeros(n, dtype=torch.bool, device=x.device)
    counts = torch.zeros(steps + 1, dtype=torch.long)
    index = todo.nonzero().flatten()
    generator = torch.Generator(device=x.device).manual_seed(int(seed))
    for start in range(0, index.numel(), batch_size):
        idx = index[start:start + batch_size]
        xb, yb = x[idx], y[idx]
        broken = torch.zeros(idx.numel(), dtype=torch.bool, device=x.device)
        tracker = _Tracker(loss, broken)
        x_adv = pgd(model, xb, yb, eps=eps, alpha=eps / 4 if alpha is None else alpha, steps=steps,
                    loss=tracker, start="uniform", generator=generator)
        broken |= predict(model, x_adv, batch_size) != yb
        history = tracker.history + [int(broken.sum())]  # iterates 0..steps-1, then the final point
        counts += idx.numel() - torch.tensor(history[:steps + 1])
        robust[idx] = ~broken
    curve = (counts.float() / max(n, 1)).tolist()
    return PgdRun(robust=robust, curve=curve)


def transfer_run(model: nn.Module, surrogate: nn.Module, x: Tensor, y: Tensor, *, eps: float, steps: int,
                 seed: int, batch_size: int = 256) -> Tensor:
    """Per-image robustness of ``model`` to PGD-CE examples crafted on ``surrogate`` (final iterate)."""
    clean = predict(model, x, batch_size) == y
    generator = torch.Generator(device=x.device).manual_seed(int(seed))
    robust = torch.zeros_like(clean)
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        x_adv = pgd(surrogate, xb, yb, eps=eps, alpha=eps / 4, steps=steps, loss="ce", generator=generator)
        robust[start:start + batch_size] = predict(model, x_adv, batch_size) == yb
    return clean & robust


def gradient_health(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, seed: int,
                    batch_size: int = 256) -> dict[str, Tensor]:
    """Per image: is the CE input gradient all-zero or non-finite, at x and at a uniform random
    point of the eps-ball; are the logits non-finite.

    Returns bool (N,) tensors ``zero_clean``, ``zero_random``, ``nonfinite`` (gradient or logits).
    """
    generator = torch.Generator(device=x.device).manual_seed(int(seed))
    out: dict[str, list[Tensor]] = {"zero_clean": [], "zero_random": [], "nonfinite": []}
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        noise = torch.empty_like(xb).uniform_(-eps, eps, generator=generator)
        bad = torch.zeros(xb.shape[0], dtype=torch.bool, device=x.device)
        for key, point in (("zero_clean", xb), ("zero_random", (xb + noise).clamp(0, 1))):
            point = point.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                logits = model(point)
                (grad,) = torch.autograd.grad(F.cross_entropy(logits, yb, reduction="sum"), point)
            flat = grad.flatten(1)
            finite = torch.isfinite(flat).all(1) & torch.isfinite(logits.detach()).all(1)
            bad |= ~finite
            out[key].append(finite & (flat.abs().sum(1) == 0))
        out["nonfinite"].append(bad)
    return {k: torch.cat(v) for k, v in out.items()}


def output_randomness(model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """Per image: do two forward passes on the same input disagree? AutoAttack's rule
    (``check_randomized``): the L2 distance between the L2-normalised logits exceeds 1e-4, so
    float noise of a deterministic model is not randomness."""
    with torch.no_grad():
        parts = []
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size]
            a, b = model(xb), model(xb)
            a, b = (v / (v.flatten(1).norm(dim=1, keepdim=True) + 1e-10) for v in (a, b))
            parts.append((a - b).flatten(1).norm(dim=1) > 1e-4)
    return torch.cat(parts)


def final_run(model: nn.Module, x: Tensor, y: Tensor, attack: Callable[[Tensor, Tensor], Tensor], *,
              batch_size: int = 256) -> Tensor:
    """Per image: is ``attack(xb, yb)``'s final x_adv classified correctly by one forward of ``model``?

    The rule of ``robustrain eval`` (not the "any iterate" rule of :func:`pgd_run`, which for a
    random model would count every draw along the run), so an adaptive rerun and its baseline are
    the numbers an evaluation reports.
    """
    parts = []
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        parts.append(predict(model, attack(xb, yb), batch_size) == yb)
    return torch.cat(parts)
