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
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from robustrain.attacks import BPDA, eot_pgd
from robustrain.attacks.autoattack import require_pyautoattack, run_autoattack
from robustrain.data import to_unit_float
from robustrain.eval.audit import checks as C
from robustrain.eval.audit.core import AdaptiveResult, AuditReport, AuditSettings, CheckResult
from robustrain.eval.audit.measure import (
    LOSSES,
    final_run,
    gradient_health,
    output_randomness,
    pgd_run,
    predict,
    transfer_run,
)
from robustrain.utils.runtime import fp32_eval, preserved_rng

__all__ = ["BPDA_HINT", "run_audit"]

#: what the audit says when gradients are masked and no preprocessing was named (one line)
BPDA_HINT = ("name the non-differentiable preprocessing to rerun PGD through BPDA: "
             "run_audit(classifier, images, labels, preprocess=fn) in Python (docs/audit.md)")

Transform = Callable[[Tensor], Tensor]


def _mean(mask: Tensor) -> float:
    return float(mask.float().mean()) if mask.numel() else 0.0


def _stages(settings: AuditSettings, num_classes: int, use_aa: bool, surrogate: bool) -> int:
    losses = sum(1 for _, need in LOSSES.values() if num_classes >= need) - 1  # CE comes from the long run
    return 1 + len(settings.sweep_radii()) - 1 + settings.restarts + losses + 2 * use_aa + surrogate


@dataclass
class _Audit:
    """What every measurement shares: the model and images, the settings, the progress bar."""

    model: nn.Module
    x: Tensor
    y: Tensor
    settings: AuditSettings
    num_classes: int
    device: torch.device
    bar: Any
    results: dict[str, Any] = field(default_factory=dict)

    def stage(self, name: str) -> None:
        self.bar.set_postfix_str(name)

    def done(self) -> None:
        self.bar.update(1)

    def pgd(self, **kw: Any):  # noqa: ANN201
        s = self.settings
        return pgd_run(self.model, self.x, self.y, **{"eps": s.eps, "seed": s.seed, "batch_size": s.batch_size, **kw})

    def add_stages(self, k: int) -> None:
        """Stages found to be needed on the way (the adaptive reruns)."""
        self.bar.total += k
        self.bar.refresh()


class _Preprocessed(nn.Module):
    """The defence ``model(preprocess(x))`` as it is deployed: real (zero, shattered) gradients."""

    def __init__(self, model: nn.Module, preprocess: Transform) -> None:
        super().__init__()
        self.model, self.preprocess = model, preprocess

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.preprocess(x))


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
    preprocess: Transform | None = None,
    approx: Transform | None = None,
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
        preprocess: the defence's non-differentiable input transformation (quantisation, JPEG,
            thresholding), when the defence is ``model(preprocess(x))``: pass the classifier
            behind it as ``model``. The checks audit the composition; when they find zero or
            shattered gradients, PGD is rerun through :class:`~robustrain.attacks.BPDA` and the
            report gives "reported X%, adaptive Y%". Without it such a finding says how to name one.
        approx: BPDA's differentiable stand-in for ``preprocess`` in the backward pass (default:
            the identity, straight through).

    Whatever ``preprocess``: when the model is random (two forwards of the same input disagree,
    or AutoAttack flags a randomized defence), PGD is rerun as EOT-PGD
    (:func:`~robustrain.attacks.eot_pgd`, ``settings.eot_samples`` draws per step) and reported
    next to the plain number in :attr:`AuditReport.adaptive`.

    Returns:
        :class:`AuditReport` (``meta`` is left for the caller to fill).
    """
    settings = settings or AuditSettings()
    t0 = time.perf_counter()
    classifier = model
    if preprocess is not None:
        model = _Preprocessed(classifier, preprocess)
    device = torch.device(device if device is not None else next(model.parameters()).device)
    x = to_unit_float(images.detach()).to(device=device, dtype=torch.float32)
    y = labels.detach().to(device).long()
    if x.shape[0] == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels; pass one label per image, at least one")
    use_autoattack, aa_note = _autoattack_available(use_autoattack)
    with fp32_eval(model), torch.no_grad():
        num_classes = int(model(x[:1]).shape[1])
    bar = tqdm(total=_stages(settings, num_classes, use_autoattack, surrogate is not None), desc="audit",
               unit="stage", leave=False, disable=not progress)
    a = _Audit(model, x, y, settings, num_classes, device, bar)
    try:
        with preserved_rng(), fp32_eval(model):
            a.results["clean"] = _mean(predict(model, x, settings.batch_size) == y)
            _randomness(a)
            _gradients(a)
            _sweep(a)
            _convergence(a)
            _losses(a)
            if use_autoattack:
                _autoattack(a)
            else:
                a.results["white_box"] = a.results["pgd_best"]
            _transfer(a, surrogate)
            _adaptive_eot(a)
            _adaptive_bpda(a, classifier, preprocess, approx)
    finally:
        bar.close()
    return _judge(a, surrogate is not None, use_autoattack, aa_note, seconds=time.perf_counter() - t0)


def _autoattack_available(wanted: bool) -> tuple[bool, str]:
    """(run AutoAttack?, why not)."""
    if not wanted:
        return False, "AutoAttack was switched off"
    try:
        require_pyautoattack()
    except ImportError:
        return False, f"pyautoattack is not installed: {C.INSTALL_HINT}"
    return True, ""


def _randomness(a: _Audit) -> None:
    """Do two forwards of the same images disagree (a randomized defence)? Cheap: two passes."""
    a.results["differ"] = output_randomness(a.model, a.x, a.settings.batch_size)


def _gradients(a: _Audit) -> None:
    """5. zero / non-finite input gradients at the clean and at random points."""
    a.stage("gradients")
    s = a.settings
    a.results["health"] = gradient_health(a.model, a.x, a.y, eps=s.eps, seed=s.seed, batch_size=s.batch_size)
    a.done()


def _sweep(a: _Audit) -> None:
    """1. the eps sweep: each radius an independent attack, so monotonicity is a real test."""
    radii, acc, robust = a.settings.sweep_radii(), [], {}
    for k, radius in enumerate(radii):
        if radius == 0:
            acc.append(a.results["clean"])
            continue
        a.stage(f"sweep eps={radius:.4g}")
        run = a.pgd(eps=radius, steps=a.settings.sweep_steps, seed=a.settings.seed + 100 + k)
        acc.append(run.accuracy)
        robust[radius] = run.robust
        a.done()
    a.results.update(radii=radii, sweep_acc=acc, sweep_robust=robust)


def _convergence(a: _Audit) -> None:
    """2. one long PGD run (its curve gives the short point), then restarts on what survived."""
    s = a.settings
    a.stage(f"PGD-{s.steps} restart 1")
    long = a.pgd(steps=s.steps)
    a.done()
    robust, curve = long.robust.clone(), [long.accuracy]
    for r in range(1, s.restarts):
        a.stage(f"PGD-{s.steps} restart {r + 1}")
        robust &= a.pgd(steps=s.steps, seed=s.seed + r, candidates=robust).robust
        curve.append(_mean(robust))
        a.done()
    a.results.update(long=long, robust_restarts=robust, restart_curve=curve,
                     acc_short=long.curve[min(s.short_steps, s.steps)])


def _losses(a: _Audit) -> None:
    """4. losses: CE from the long run's curve, CW and DLR on their own; the per-image worst case."""
    s, r = a.settings, a.results
    loss_steps = min(s.loss_steps, s.steps)
    losses = {"ce": r["long"].curve[loss_steps]}
    white = r["robust_restarts"].clone()
    if s.eps in r["sweep_robust"]:
        white &= r["sweep_robust"][s.eps]
    for name, (loss, need) in LOSSES.items():
        if name == "ce" or a.num_classes < need:
            continue
        a.stage(f"PGD-{loss_steps}-{name.upper()}")
        run = a.pgd(steps=loss_steps, seed=s.seed + 50, loss=loss)
        losses[name] = run.accuracy
        white &= run.robust
        a.done()
    r.update(losses=losses, white=white, pgd_best=_mean(white))


def _autoattack(a: _Audit) -> None:
    """APGD-CE + APGD-T (white box, per image with the PGD runs), then Square alone (black box)."""
    s, r = a.settings, a.results
    attacks = ["apgd-ce", "apgd-t"] if a.num_classes > 3 else ["apgd-ce"]
    options: dict[str, Any] = {"apgd.n_iter": s.aa_iters, "apgd.n_restarts": 1}
    if "apgd-t" in attacks:
        options.update({"apgd_targeted.n_iter": s.aa_iters,
                        "apgd_targeted.n_target_classes": min(s.aa_targets, a.num_classes - 1)})
    common = dict(version="custom", eps=s.eps, batch_size=s.batch_size, seed=s.seed, progress=False, device=a.device)
    a.stage("APGD-CE + APGD-T")
    aa = run_autoattack(a.model, a.x, a.y, attacks=attacks, options=options, **common)
    flags = list(aa.flags)
    per_image = getattr(aa, "robust", None)
    a.done()
    a.stage("Square")
    sq = run_autoattack(a.model, a.x, a.y, attacks=["square"], options={"square.n_queries": s.square_queries},
                        **common)
    flags.extend(f for f in sq.flags if f not in flags)
    a.done()
    white_box = (_mean(r["white"] & per_image.to(a.device)) if per_image is not None
                 else min(r["pgd_best"], aa.accuracy))
    r.update(aa_acc=aa.accuracy, square_acc=sq.accuracy, flags=flags, white_box=white_box)


def _transfer(a: _Audit, surrogate: nn.Module | None) -> None:
    """3. (part) a transfer attack crafted on ``surrogate``, when given."""
    if surrogate is None:
        return
    a.stage("transfer")
    with fp32_eval(surrogate):
        surrogate.to(a.device)
        a.results["transfer_acc"] = _mean(transfer_run(a.model, surrogate, a.x, a.y, eps=a.settings.eps,
                                                       steps=a.settings.transfer_steps, seed=a.settings.seed + 7,
                                                       batch_size=a.settings.batch_size))
    a.done()


def _flags_say(a: _Audit, words: str) -> bool:
    return any(words in f.lower() for f in a.results.get("flags") or [])


def _random_trigger(a: _Audit) -> str:
    """Why the model counts as random ("" when it does not)."""
    differ, n = int(a.results["differ"].sum()), int(a.x.shape[0])
    reasons = [f"outputs differ between two passes on {differ} of {n} images"] if differ else []
    if _flags_say(a, "randomized"):
        reasons.append("AutoAttack flags a randomized defence")
    return "; ".join(reasons)


def _masking_trigger(a: _Audit) -> str:
    """Why the gradients count as zero or shattered ("" when they do not): check 5's rule, AutoAttack's
    zero-gradient flag, or accuracy left at the unbounded radius (check 1)."""
    r, th, n = a.results, a.settings.thresholds, int(a.x.shape[0])
    health = r["health"]
    bad = int((health["zero_clean"] | health["zero_random"] | health["nonfinite"]).sum())
    reasons = [f"{bad} of {n} images have a zero or non-finite input gradient"] if bad / n > th.grad_pass else []
    if _flags_say(a, "zero gradient"):
        reasons.append("AutoAttack flags zero gradients")
    left = r["sweep_acc"][-1]
    if left > th.unbounded_pass + 1e-12 and round(left * n) > 1:
        reasons.append(f"{C.pct(left)} accuracy left at the unbounded radius")
    return "; ".join(reasons)


def _final_accuracy(a: _Audit, attack_model: nn.Module, samples: int, seed: int) -> float:
    """Accuracy of the audited model on the final x_adv of PGD-``short_steps`` (step eps / 4) crafted on
    ``attack_model`` with the gradient averaged over ``samples`` forwards (1: plain PGD, bit for bit)."""
    s = a.settings
    generator = torch.Generator(device=a.device).manual_seed(seed)
    torch.manual_seed(seed)  # the model's own random draws

    def attack(xb: Tensor, yb: Tensor) -> Tensor:
        return eot_pgd(attack_model, xb, yb, eps=s.eps, alpha=s.eps / 4, steps=s.short_steps, samples=samples,
                       generator=generator)

    return _mean(final_run(a.model, a.x, a.y, attack, batch_size=s.batch_size))


def _adaptive_eot(a: _Audit) -> None:
    """A random model: plain PGD vs EOT-PGD, same start, each scored by one ordinary forward."""
    trigger = _random_trigger(a)
    if not trigger:
        return
    s, seed = a.settings, a.settings.seed + 300
    a.add_stages(2)
    a.stage(f"PGD-{s.short_steps} (reported)")
    reported = _final_accuracy(a, a.model, 1, seed)
    a.done()
    a.stage(f"EOT-PGD-{s.short_steps}x{s.eot_samples}")
    adaptive = _final_accuracy(a, a.model, s.eot_samples, seed)
    a.done()
    a.results.setdefault("adaptive", []).append(AdaptiveResult(
        "eot", trigger, f"PGD-{s.short_steps}", f"EOT-PGD-{s.short_steps}x{s.eot_samples}", reported, adaptive))


def _adaptive_bpda(a: _Audit, classifier: nn.Module, preprocess: Transform | None,
                   approx: Transform | None) -> None:
    """Zero or shattered gradients: PGD through BPDA around the named preprocessing (with EOT when
    the model is also random), or the one line saying how to name it."""
    trigger = _masking_trigger(a)
    if not trigger:
        return
    s, seed = a.settings, a.settings.seed + 400
    baseline = f"PGD-{s.short_steps}"
    if preprocess is None:
        a.results.setdefault("adaptive", []).append(
            AdaptiveResult("bpda", trigger, baseline, "", None, None, note=BPDA_HINT))
        return
    samples = s.eot_samples if _random_trigger(a) else 1
    attack = f"BPDA + {baseline}" if samples == 1 else f"BPDA + EOT-PGD-{s.short_steps}x{samples}"
    a.add_stages(2)
    a.stage(f"{baseline} (reported)")
    reported = _final_accuracy(a, a.model, 1, seed)
    a.done()
    a.stage(attack)
    adaptive = _final_accuracy(a, BPDA(classifier, preprocess, approx), samples, seed)
    a.done()
    a.results.setdefault("adaptive", []).append(AdaptiveResult("bpda", trigger, baseline, attack, reported, adaptive))


def _judge(a: _Audit, has_surrogate: bool, use_autoattack: bool, aa_note: str, *, seconds: float) -> AuditReport:
    """The six checks on the measurements, and the report."""
    s, r, th, n = a.settings, a.results, a.settings.thresholds, int(a.x.shape[0])
    health, long = r["health"], r["long"]
    aa_acc, square_acc, transfer_acc = r.get("aa_acc"), r.get("square_acc"), r.get("transfer_acc")
    zero = health["zero_clean"] | health["zero_random"]
    transfer_note = "" if has_surrogate else (
        "no transfer attack: give --surrogate with a model of the same task trained with `standard`")
    checks: list[CheckResult] = [
        C.check_eps_sweep(r["radii"], r["sweep_acc"], n=n, thresholds=th),
        C.check_convergence(short_steps=min(s.short_steps, s.steps), steps=s.steps, restarts=s.restarts,
                            acc_short=r["acc_short"], acc_long=long.accuracy, acc_restarts=_mean(r["robust_restarts"]),
                            n=n, thresholds=th),
        C.check_black_box(white_box=r["white_box"], square=square_acc, transfer=transfer_acc, n=n, thresholds=th,
                          square_note="" if use_autoattack else f"no Square: {aa_note}", transfer_note=transfer_note),
        C.check_losses(losses=r["losses"], pgd_best=r["pgd_best"], autoattack=aa_acc, n=n, thresholds=th,
                       autoattack_note=aa_note),
        C.check_gradients(zero=int((zero & ~health["nonfinite"]).sum()), nonfinite=int(health["nonfinite"].sum()),
                          zero_clean=int(health["zero_clean"].sum()), zero_random=int(health["zero_random"].sum()),
                          n=n, thresholds=th),
        C.check_autoattack_flags(r.get("flags") if use_autoattack else None, note=aa_note),
    ]
    adaptive: list[AdaptiveResult] = r.get("adaptive", [])
    robust = min([r["white_box"]] + [v for v in (square_acc, transfer_acc) if v is not None]
                 + [v for res in adaptive for v in (res.reported, res.adaptive) if v is not None])
    curves = {
        "eps": {"eps": r["radii"], "accuracy": r["sweep_acc"]},
        "steps": {"steps": list(range(len(long.curve))), "accuracy": long.curve,
                  "restarts": r["restart_curve"], "autoattack": aa_acc, "square": square_acc},
    }
    return AuditReport(checks=checks, n=n, clean_accuracy=r["clean"], robust_accuracy=robust, settings=s,
                       curves=curves, seconds=seconds, adaptive=adaptive)
