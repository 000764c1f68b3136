"""AWP: adversarial weight perturbation (Wu, Xia & Wang, NeurIPS 2020), for any method.

AWP trains at perturbed weights ``w + v``: before each step it takes one ascent step on the
method's own adversarial loss, scales it layer-wise to ``v_l = gamma * ||w_l|| * g_l / ||g_l||``
(the official ``diff_in_weights`` normalisation; only multi-dimensional ``weight`` tensors, i.e.
conv / linear kernels, are perturbed: BatchNorm affines and biases are not), adds ``v``, computes
the training step's gradient at ``w + v``, steps the optimiser and removes ``v`` again. It touches
the weights around the optimiser step, so it is a trainer-level hook, not a loss:
:func:`~robustrain.train.loop.train_one_epoch` calls :meth:`AWP.perturb` before the method's
training forward and :meth:`AWPHandle.restore` after ``optimizer.step()``; with ``awp.gamma=0``
(the default) nothing in the loop changes. Enable it with a config section
``awp: {gamma: 0.01, warmup: 0}`` or by appending ``+awp`` to a method name (``pgd_at+awp``,
``trades+awp``, ``pgd_at+uiat+awp``), which sets the official gamma of the base method (5e-3
for TRADES-style bases, 1e-2 otherwise) and warm-up (10 for TRADES, 0 otherwise) unless the
``awp`` section sets them.

Faithfulness to the official code (github.com/csdongxian/AWP, ``utils_awp.py`` and
``trades_AWP/train_trades_cifar.py``):

* gamma: ``--awp-gamma`` 0.01 (PGD-AT) / 0.005 (TRADES); ``awp.warmup`` has the scripts'
  ``--awp-warmup`` meaning with 1-based epochs (``if epoch >= args.awp_warmup``): 0 (PGD-AT) and
  10 (TRADES: the first 9 epochs train without AWP).
* the ascent: one step of the loss the method trains on, at the current weights, in train mode,
  without touching BatchNorm running statistics (the official code uses a proxy copy of the
  model "which does not affect the statistics of BN"; here the model's buffers are saved and put
  back, which is the same thing without a second model). The normalisation makes the proxy
  optimiser's lr irrelevant, so the direction is the raw gradient.
* ``v`` is removed AFTER ``optimizer.step()`` (``awp_adversary.restore(awp)`` follows
  ``optimizer.step()`` in the official loop): the update is computed at ``w + v`` (weight decay
  included) and applied to ``w + v``, then ``v`` is subtracted. The issue's wording "remove v
  before the optimiser step" differs only through weight decay / momentum seeing ``w`` instead
  of ``w + v``; we follow the code that produced the published numbers.

* the adversary is generated ONCE, at ``w``, and the step at ``w + v`` trains on that same
  adversary (official ``train_cifar10.py``: ``X_adv`` comes before ``calc_awp`` and is reused).
  Methods generate their adversaries inside ``method(model, batch)``, so the ascent call runs
  under :func:`robustrain.attacks.tape.recording` and the training call under
  :meth:`AWPHandle.replay`: every adversary generator built on :func:`robustrain.attacks.pgd`
  (PGD, FGSM, CW, N-FGSM, the inverse adversaries, GAIRAT's geometry PGD) hands the training
  call the adversary the ascent call generated, without attacking again. The cost is one extra
  forward/backward per step (the ascent), as the official code's. What is not an adversary is
  recomputed at ``w + v``: losses, GradAlign's input gradients, and UIAT's universal
  perturbation step (a state update, put back after the ascent, so it happens once).

State: the ascent must not advance a stateful method (UIAT's universal perturbations, momentum
buffers, per-sample buffers): the method's ``state_dict`` is copied before the ascent and loaded
back after it, and the RNG states are restored, so the training call sees exactly what it would
without AWP. ``AWP`` itself holds only its settings (``state_dict`` for checkpoints).

DDP: the ascent's ``backward`` goes through the DDP-wrapped training module, whose reducer
averages the gradient over ranks, so every rank computes the same ``v``. bf16: the ascent
forward runs under the same autocast as the training forward; norms are taken in fp32 on the
fp32 parameters.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Sequence

import torch
from torch import Tensor, nn

from robustrain.attacks.tape import AdversaryTape, recording, replaying

__all__ = ["AWP", "AWPHandle", "awp_perturbation", "layer_norms", "perturbed_parameters"]

#: the official code's EPS in ``diff_in_weights``
EPS = 1e-20


def perturbed_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters AWP perturbs: trainable ``weight`` tensors with more than one dimension
    (as the official ``diff_in_weights``: conv / linear kernels, not BN affines or biases)."""
    return [(n, p) for n, p in model.named_parameters()
            if p.requires_grad and p.dim() > 1 and n.rsplit(".", 1)[-1] == "weight"]


def layer_norms(tensors: Sequence[Tensor]) -> list[Tensor]:
    """The Frobenius norm of each tensor, in fp32."""
    return [t.detach().float().norm() for t in tensors]


def awp_perturbation(weights: Sequence[Tensor], grads: Sequence[Tensor | None], gamma: float) -> list[Tensor]:
    """``v_l = gamma * ||w_l|| * g_l / (||g_l|| + EPS)`` for each layer (zero where ``g_l`` is None).

    Example:
        >>> w, g = [torch.tensor([[3.0, 4.0]])], [torch.tensor([[0.0, 2.0]])]
        >>> awp_perturbation(w, g, 0.1)[0]
        tensor([[0.0000, 0.5000]])
    """
    out = []
    for w, g, wn in zip(weights, grads, layer_norms(weights)):
        if g is None:
            out.append(torch.zeros_like(w))
            continue
        gn = g.detach().float().norm()
        out.append((g.detach().float() * (gamma * wn / (gn + EPS))).to(w.dtype))
    return out


class AWPHandle:
    """What :meth:`AWP.perturb` added and the adversaries its ascent generated.

    :meth:`replay` hands those adversaries to the training call at ``w + v``; :meth:`restore`
    subtracts ``v`` (once).
    """

    def __init__(self, params: list[nn.Parameter], deltas: list[Tensor],
                 tape: AdversaryTape | None = None) -> None:
        self.params, self.deltas = params, deltas
        self.tape = tape if tape is not None else AdversaryTape()

    def replay(self) -> ContextManager[AdversaryTape]:
        """Context for the training call: its adversaries are the ones the ascent generated."""
        return replaying(self.tape)

    @torch.no_grad()
    def restore(self) -> None:
        for p, v in zip(self.params, self.deltas):
            p.sub_(v)
        self.params, self.deltas = [], []


@dataclass
class AWP:
    """The AWP hook: its settings (``gamma``, ``warmup``) and nothing else."""

    gamma: float
    warmup: int = 0

    def active(self, epoch: int) -> bool:
        """On in 0-based ``epoch`` (official: ``if epoch >= args.awp_warmup``, 1-based epochs)."""
        return self.gamma > 0 and epoch + 1 >= self.warmup

    def perturb(self, model: nn.Module, loss_fn: Callable[[], Tensor], *,
                method: nn.Module | None = None) -> AWPHandle:
        """Add ``v`` to ``model``'s weights and return the handle that removes it.

        Args:
            model: the unwrapped model (its parameters are perturbed; its buffers, e.g. BN
                running statistics, are left as they were before the ascent).
            loss_fn: the method's training loss at the current weights (one call: the ascent),
                run in the caller's autocast context; the adversaries it generates are
                recorded for :meth:`AWPHandle.replay`.
            method: the method whose state is put back after the ascent (None: stateless).
        """
        named = perturbed_parameters(model)
        params = [p for _, p in named]
        buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
        method_state = copy.deepcopy(method.state_dict()) if method is not None else None
        rng = _rng_state(params[0].device if params else torch.device("cpu"))
        saved_grads = [p.grad for p in model.parameters()]
        for p in model.parameters():
            p.grad = None
        with recording() as tape:
            loss = loss_fn()
        loss.backward()  # through DDP when wrapped: the gradient is averaged over ranks
        grads = [p.grad for p in params]
        deltas = awp_perturbation([p.detach() for p in params], grads, self.gamma)
        for p, g in zip(model.parameters(), saved_grads):
            p.grad = g
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(buffers[k])
            for p, v in zip(params, deltas):
                p.add_(v)
        if method is not None:
            method.load_state_dict(method_state)
        _set_rng_state(rng)
        return AWPHandle(params, deltas, tape)

    def state_dict(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "warmup": self.warmup}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gamma, self.warmup = float(state["gamma"]), int(state["warmup"])


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Tensor, Tensor | None]) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda)
