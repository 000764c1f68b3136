""":func:`run_audit`: run the measurements on one model and judge them (the six checks).

Example:
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 4))
    >>> x, y = torch.rand(16, 3, 4, 4), torch.randint(0, 4, (16,))
    >>> report = run_audit(net, x, y, AuditSettings.for_mode(quick=True), use_autoattack=False, progress=False)
    >>> [c.key for c in report.checks]
    ['eps_sweep', 'convergence', 'black_box', 'losses', 'gradients', 'autoattack_flags']
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from robustrain.attacks.autoattack import require_pyautoattack, run_autoattack
from robustrain.data import to_unit_float
from robustrain.eval.audit import checks as C
from robustrain.eval.audit.core import AuditReport, AuditSettings, CheckResult
from robustrain.eval.audit.measure import LOSSES, gradient_health, pgd_run, predict, transfer_run
from robustrain.utils.runtime import fp32_eval

__all__ = ["run_audit"]


def _mean(mask: Tensor) -> float:
    return float(mask.float().mean()) if mask.numel() else 0.0


def _stages(settings: AuditSettings, num_classes: int, use_aa: bool, surrogate: bool) -> int:
    losses = sum(1 for _, need in LOSSES.values() if num_classes >= need) - 1  # CE comes from the long run
    return 1 + len(settings.sweep_radii()) - 1 + settings.restarts + losses + 2 * use_aa + surrogate


def run_audit(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    settings: AuditSettings | None = None,
    *,
    surrogate: nn.Module | None = None,
    use_autoattack: bool = True,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> AuditReport:
    """Audit ``model``'s robustness evaluation on ``images`` (fp32, eval mode).

    Args:
        model: a [0, 1]-input classifier returning logits (its train/eval flag is restored).
        images: uint8 (N, C, H, W) in 0..255 or float in [0, 1].
        labels: int64 (N,).
        settings: :class:`AuditSettings` (default: the full preset, eps 8/255).
        surrogate: a model of the same task to craft transfer attacks on (the same
            architecture trained with ``standard``); None: no transfer attack (check 3 then
            rests on Square alone and says how to add one).
        use_autoattack: run APGD and Square through the official pyautoattack (when installed;
            when not, checks 3, 4 and 6 say so with the install hint).
        device: where to attack (default: the model's device).
        progress: a tqdm bar over the audit's stages.

    Returns:
        :class:`AuditReport` (``meta`` is left for the caller to fill).
    """
    settings = settings or AuditSettings()
    t0 = time.perf_counter()
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    x = to_unit_float(images.detach()).to(device=device, dtype=torch.float32)
    y = labels.detach().to(device).long()
    n = int(x.shape[0])
    if n == 0 or y.shape[0] != n:
        raise ValueError(f"{n} images but {y.shape[0]} labels; pass one label per image, at least one")
    th, bs, eps, seed = settings.thresholds, settings.batch_size, settings.eps, settings.seed
    aa_note = ""
    if use_autoattack:
        try:
            require_pyautoattack()
        except ImportError:
            use_autoattack, aa_note = False, f"pyautoattack is not installed: {C.INSTALL_HINT}"
    else:
        aa_note = "AutoAttack was switched off"

    cpu_rng = torch.get_rng_state()
    results: dict[str, Any] = {}
    with fp32_eval(model), torch.no_grad():
        num_classes = int(model(x[:1]).shape[1])
    bar = tqdm(total=_stages(settings, num_classes, use_autoattack, surrogate is not None), desc="audit",
               unit="stage", leave=False, disable=not progress)

    def stage(name: str) -> None:
        bar.set_postfix_str(name)

    try:
        with fp32_eval(model):
            clean = predict(model, x, bs) == y
            clean_acc = _mean(clean)
            # 5. gradients
            stage("gradients")
            health = gradient_health(model, x, y, eps=eps, seed=seed, batch_size=bs)
            bar.update(1)
            # 1. the eps sweep (each radius an independent attack, so monotonicity is a real test)
            radii = settings.sweep_radii()
            sweep_acc, sweep_robust = [], {}
            for k, radius in enumerate(radii):
                if radius == 0:
                    sweep_acc.append(clean_acc)
                    continue
                stage(f"sweep eps={radius:.4g}")
                run = pgd_run(model, x, y, eps=radius, steps=settings.sweep_steps, seed=seed + 100 + k,
                              batch_size=bs)
                sweep_acc.append(run.accuracy)
                sweep_robust[radius] = run.robust
                bar.update(1)
            # 2. convergence: one long run (its curve gives the short point), then restarts
            stage(f"PGD-{settings.steps} restart 1")
            long = pgd_run(model, x, y, eps=eps, steps=settings.steps, seed=seed, batch_size=bs)
            bar.update(1)
            robust_restarts = long.robust.clone()
            restart_curve = [long.accuracy]
            for r in range(1, settings.restarts):
                stage(f"PGD-{settings.steps} restart {r + 1}")
                again = pgd_run(model, x, y, eps=eps, steps=settings.steps, seed=seed + r,
                                candidates=robust_restarts, batch_size=bs)
                robust_restarts &= again.robust
                restart_curve.append(_mean(robust_restarts))
                bar.update(1)
            acc_short = long.curve[min(settings.short_steps, settings.steps)]
            # 4. losses: CE from the long run's curve, CW and DLR on their own
            loss_steps = min(settings.loss_steps, settings.steps)
            losses = {"ce": long.curve[loss_steps]}
            white = robust_restarts.clone()
            if eps in sweep_robust:
                white &= sweep_robust[eps]
            for name, (loss, need) in LOSSES.items():
                if name == "ce" or num_classes < need:
                    continue
                stage(f"PGD-{loss_steps}-{name.upper()}")
                run = pgd_run(model, x, y, eps=eps, steps=loss_steps, seed=seed + 50, loss=loss, batch_size=bs)
                losses[name] = run.accuracy
                white &= run.robust
                bar.update(1)
            pgd_best = _mean(white)
            # AutoAttack: APGD-CE + APGD-T, then Square alone (black box)
            aa_acc = square_acc = None
            flags: list[str] | None = None
            if use_autoattack:
                flags = []
                targets = min(settings.aa_targets, num_classes - 1)
                attacks = ["apgd-ce", "apgd-t"] if num_classes > 3 else ["apgd-ce"]
                options = {"apgd.n_iter": settings.aa_iters, "apgd.n_restarts": 1}
                if "apgd-t" in attacks:
                    options.update({"apgd_targeted.n_iter": settings.aa_iters,
                                    "apgd_targeted.n_target_classes": targets})
                stage("APGD-CE + APGD-T")
                aa = run_autoattack(model, x, y, version="custom", attacks=attacks, eps=eps, options=options,
                                    batch_size=bs, seed=seed, progress=False, device=device)
                aa_acc = aa.accuracy
                flags.extend(aa.flags)
                per_image = getattr(aa, "robust", None)
                white_all = white & per_image.to(device) if per_image is not None else None
                bar.update(1)
                stage("Square")
                sq = run_autoattack(model, x, y, version="custom", attacks=["square"], eps=eps,
                                    options={"square.n_queries": settings.square_queries}, batch_size=bs,
                                    seed=seed, progress=False, device=device)
                square_acc = sq.accuracy
                flags.extend(f for f in sq.flags if f not in flags)
                bar.update(1)
                white_box = _mean(white_all) if white_all is not None else min(pgd_best, aa_acc)
            else:
                white_box = pgd_best
            transfer_acc = None
            if surrogate is not None:
                stage("transfer")
                with fp32_eval(surrogate):
                    surrogate.to(device)
                    transfer_acc = _mean(transfer_run(model, surrogate, x, y, eps=eps,
                                                      steps=settings.transfer_steps, seed=seed + 7, batch_size=bs))
                bar.update(1)
    finally:
        bar.close()
        torch.set_rng_state(cpu_rng)

    zero = health["zero_clean"] | health["zero_random"]
    transfer_note = "" if surrogate is not None else (
        "no transfer attack: give --surrogate with a model of the same task trained with `standard`")
    checks: list[CheckResult] = [
        C.check_eps_sweep(radii, sweep_acc, n=n, thresholds=th),
        C.check_convergence(short_steps=min(settings.short_steps, settings.steps), steps=settings.steps,
                            restarts=settings.restarts, acc_short=acc_short, acc_long=long.accuracy,
                            acc_restarts=_mean(robust_restarts), n=n, thresholds=th),
        C.check_black_box(white_box=white_box, square=square_acc, transfer=transfer_acc, n=n, thresholds=th,
                          square_note="" if use_autoattack else f"no Square: {aa_note}", transfer_note=transfer_note),
        C.check_losses(losses=losses, pgd_best=pgd_best, autoattack=aa_acc, n=n, thresholds=th,
                       autoattack_note=aa_note),
        C.check_gradients(zero=int((zero & ~health["nonfinite"]).sum()), nonfinite=int(health["nonfinite"].sum()),
                          zero_clean=int(health["zero_clean"].sum()), zero_random=int(health["zero_random"].sum()),
                          n=n, thresholds=th),
        C.check_autoattack_flags(flags, note=aa_note),
    ]
    robust = min([white_box] + [v for v in (square_acc, transfer_acc) if v is not None])
    curves = {
        "eps": {"eps": radii, "accuracy": sweep_acc},
        "steps": {"steps": list(range(len(long.curve))), "accuracy": long.curve,
                  "restarts": restart_curve, "autoattack": aa_acc, "square": square_acc},
    }
    return AuditReport(checks=checks, n=n, clean_accuracy=clean_acc, robust_accuracy=robust, settings=settings,
                       curves=curves, seconds=time.perf_counter() - t0)
