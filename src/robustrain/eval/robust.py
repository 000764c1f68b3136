"""Robust accuracy under the evaluation protocol of DESIGN.md.

Evaluation is always fp32 and in eval mode (whatever the training precision), with a fixed
seed for the attacks' random starts, so the same checkpoint gives the same table twice.

Example:
    >>> import torch
    >>> from robustrain.eval import evaluate_attacks
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
    >>> x = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8)
    >>> y = torch.randint(0, 10, (8,))
    >>> acc = evaluate_attacks(net, x, y, ["natural", "pgd20"], batch_size=4, progress=False)
    >>> sorted(acc)
    ['natural', 'pgd20']
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

__all__ = ["evaluate_attacks", "build_eval_attacks", "PROTOCOL", "format_table"]

#: a one-line statement of the default protocol, printed with every table
PROTOCOL = (
    "Linf eps=8/255; PGD-20: step 2/255, uniform start, CE; CW30: 30-step PGD on the "
    "margin loss max(z_y - max_i!=y z_i, -50), step 2/255; fp32, eval mode"
)

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def build_eval_attacks(names: Iterable[str], **overrides: float) -> dict[str, Attack | None]:
    """Attacks by registry name; ``natural`` maps to None (clean accuracy).

    ``overrides`` (e.g. ``eps=4/255``) are passed to every attack that accepts them.
    """
    from robustrain.attacks import ATTACKS, create_attack

    out: dict[str, Attack | None] = {}
    for name in names:
        if name == "natural":
            out[name] = None
            continue
        ATTACKS.entry(name)  # clear KeyError for unknown names
        out[name] = create_attack(name, **overrides)
    return out


@contextlib.contextmanager
def _fp32_eval(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            yield
    finally:
        model.train(was_training)


def evaluate_attacks(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attacks: Iterable[str] | Mapping[str, Attack | None],
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Accuracy (in [0, 1]) of ``model`` on ``images`` under each attack.

    Args:
        model: a [0,1]-input classifier.
        images: uint8 (N, C, H, W) in 0..255 or float in [0, 1].
        labels: int64 (N,).
        attacks: registry names (``natural``, ``pgd20``, ``cw30``, ...) or a mapping of
            name -> attack callable (None = clean accuracy).
        batch_size: evaluation batch size.
        device: where to run; default: the model's device.
        seed: seeds the attacks' random starts (the global RNG is restored afterwards).
        progress: show a progress bar per attack.
    """
    from tqdm.auto import tqdm

    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    if not isinstance(attacks, Mapping):
        attacks = build_eval_attacks(attacks)
    if device is None:
        device = next(model.parameters()).device
    n = images.shape[0]
    results: dict[str, float] = {}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        with _fp32_eval(model):
            for name, attack in attacks.items():
                torch.manual_seed(seed)
                correct = torch.zeros((), dtype=torch.long, device=device)
                bar = tqdm(range(0, n, batch_size), desc=f"eval {name}", leave=False,
                           disable=not progress, unit="batch")
                for start in bar:
                    x = images[start : start + batch_size].to(device, non_blocking=True)
                    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
                    y = labels[start : start + batch_size].to(device, non_blocking=True)
                    if attack is not None:
                        x = attack(model, x, y)
                    with torch.no_grad():
                        correct += (model(x).argmax(1) == y).sum()
                results[name] = correct.item() / max(n, 1)
    finally:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    return results


def format_table(rows: Mapping[str, Mapping[str, float]], columns: Iterable[str]) -> str:
    """A markdown table: one row per model/run, accuracies in percent."""
    columns = list(columns)
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, accs in rows.items():
        cells = [f"{100 * accs[c]:.2f}" if c in accs else "-" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
