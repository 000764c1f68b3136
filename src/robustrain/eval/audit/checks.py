"""The six checks: each turns measurements (plain numbers) into a :class:`CheckResult`.

Judging is kept apart from attacking, so every threshold can be tested with made-up numbers.
The rules (``tol(n) = max(0.05, 2/n)``, ``fail = 0.10``, see :class:`Thresholds`):

1. ``eps_sweep``: accuracy may not rise with eps by more than tol (WARN) / fail (FAIL), and at
   the unbounded radius 1.0 it must be ~0: at most 1% or one image (PASS), at most 5% (WARN).
2. ``convergence``: PGD-20 minus the best of PGD-100 x restarts <= tol (PASS) / fail (WARN).
3. ``black_box``: white-box accuracy minus the best black-box one (Square, transfer) <= tol /
   fail; with no black-box attack run: WARN.
4. ``losses``: spread of the CE / CW / DLR PGD accuracies, and best PGD minus AutoAttack's
   APGD, each <= tol / fail; the worse of the two.
5. ``gradients``: fraction of images whose CE input gradient is zero or non-finite (at x or a
   random point of the ball) <= 1% (PASS) / 10% (WARN); non-finite logits: FAIL.
6. ``autoattack_flags``: no flag: PASS; a flag of gradient masking, randomness, a dynamic
   defence, probabilities for logits or examples outside the ball: FAIL; another flag: WARN;
   pyautoattack missing: WARN with the install hint.

Example:
    >>> from robustrain.eval.audit.core import Thresholds
    >>> r = check_eps_sweep([0.0, 8 / 255, 1.0], [0.9, 0.4, 0.1], n=100, thresholds=Thresholds())
    >>> r.status, r.reason.split(";")[0]
    ('FAIL', 'accuracy at the unbounded radius eps=1 (the whole pixel box) is 10.0% (10 of 100 images), not ~0')
"""

from __future__ import annotations

from typing import Sequence

from robustrain.eval.audit.core import FAIL, PASS, WARN, CheckResult, Thresholds, judge_gap, worst
from robustrain.utils.units import format_eps

__all__ = [
    "INSTALL_HINT",
    "check_autoattack_flags",
    "check_black_box",
    "check_convergence",
    "check_eps_sweep",
    "check_gradients",
    "check_losses",
    "classify_flag",
]

INSTALL_HINT = "pip install 'pyautoattack>=0.2' (the official AutoAttack, a robustrain dependency)"

#: words of AutoAttack flags that mean the evaluation itself is unreliable (FAIL)
_SEVERE = ("zero gradient", "randomized", "dynamic defense", "probability distribution", "square attack has",
           "outside the", "not deterministic")


def pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _eps(v: float) -> str:
    return "1 (the whole pixel box)" if v >= 1.0 else format_eps(v)


def check_eps_sweep(radii: Sequence[float], accuracy: Sequence[float], *, n: int,
                    thresholds: Thresholds) -> CheckResult:
    """Check 1: accuracy falls with eps and reaches ~0 at the unbounded radius (the last one)."""
    rises = [(accuracy[k + 1] - accuracy[k], radii[k], radii[k + 1]) for k in range(len(radii) - 1)]
    rise, lo, hi = max(rises, default=(0.0, 0.0, 0.0))
    last = accuracy[-1]
    kept = round(last * n)
    if last <= thresholds.unbounded_pass + 1e-12 or kept <= 1:
        end_status = PASS
    else:
        end_status = WARN if last <= thresholds.unbounded_fail + 1e-12 else FAIL
    mono_status = judge_gap(max(rise, 0.0), thresholds, n)
    status = worst([end_status, mono_status])
    parts = []
    if end_status != PASS:
        parts.append(f"accuracy at the unbounded radius eps={_eps(radii[-1])} is {pct(last)} ({kept} of {n} "
                     "images), not ~0")
    if mono_status != PASS:
        parts.append(f"accuracy rises from {pct(accuracy[radii.index(lo)])} at eps={_eps(lo)} to "
                     f"{pct(accuracy[radii.index(hi)])} at eps={_eps(hi)} (+{pct(rise)})")
    if not parts:
        parts.append(f"accuracy falls from {pct(accuracy[0])} (eps=0) to {pct(last)} at eps={_eps(radii[-1])}, "
                     f"never rising by more than {pct(thresholds.tolerance(n))}")
    meaning = {
        PASS: "The attack gets stronger with the radius and breaks everything when allowed to, as a working "
              "attack must.",
        WARN: "A working attack breaks every image at a large enough radius and never loses strength as the "
              "radius grows; a small deviation suggests the attack sometimes fails.",
        FAIL: "A larger radius contains every smaller one, so a working attack can only do better and breaks "
              "every image when unbounded: the attack is failing (gradient masking?), and the robust accuracy "
              "is overestimated.",
    }[status]
    return CheckResult("eps_sweep", "accuracy falls monotonically with eps and reaches ~0 unbounded", status,
                       "; ".join(parts), meaning,
                       {"eps": list(radii), "accuracy": list(accuracy), "max_rise": max(rise, 0.0),
                        "unbounded_accuracy": last, "tolerance": thresholds.tolerance(n)})


def check_convergence(*, short_steps: int, steps: int, restarts: int, acc_short: float, acc_long: float,
                      acc_restarts: float, n: int, thresholds: Thresholds) -> CheckResult:
    """Check 2: more steps and restarts do not keep lowering accuracy."""
    gap = acc_short - acc_restarts
    status = judge_gap(gap, thresholds, n)
    reason = (f"PGD-{short_steps} {pct(acc_short)}, PGD-{steps} {pct(acc_long)}, PGD-{steps} x {restarts} "
              f"restarts {pct(acc_restarts)}: {pct(gap)} lower with the stronger attack "
              f"(tolerance {pct(thresholds.tolerance(n))})")
    meaning = {
        PASS: "The attack has converged: more iterations and restarts find almost nothing new.",
        WARN: "The attack has not fully converged: report the stronger attack, and expect a still stronger one "
              "to lower accuracy further.",
        FAIL: "Accuracy keeps falling with more steps and restarts: the short attack is far from converged "
              "(typical of obfuscated or noisy gradients), so its number is not a robustness estimate.",
    }[status]
    return CheckResult("convergence", "more PGD steps and restarts do not keep lowering accuracy", status, reason,
                       meaning, {"short_steps": short_steps, "steps": steps, "restarts": restarts,
                                 "acc_short": acc_short, "acc_long": acc_long, "acc_restarts": acc_restarts,
                                 "gap": gap, "tolerance": thresholds.tolerance(n)})


def check_black_box(*, white_box: float, square: float | None, transfer: float | None, n: int,
                    thresholds: Thresholds, square_note: str = "", transfer_note: str = "") -> CheckResult:
    """Check 3: the white-box attacks are at least as strong as the black-box ones."""
    numbers = {"white_box": white_box, "square": square, "transfer": transfer,
               "tolerance": thresholds.tolerance(n)}
    black = {k: v for k, v in (("Square", square), ("transfer", transfer)) if v is not None}
    notes = [s for s in (square_note, transfer_note) if s]
    if not black:
        reason = "no black-box attack ran: " + "; ".join(notes or ["none configured"])
        return CheckResult("black_box", "white-box attacks beat black-box and transfer attacks", WARN, reason,
                           "Without a black-box baseline, masked gradients that fool every white-box attack would "
                           "go unnoticed.", numbers)
    name, best = min(black.items(), key=lambda kv: kv[1])
    gap = white_box - best
    status = judge_gap(gap, thresholds, n)
    numbers["gap"] = gap
    shown = ", ".join(f"{k} {pct(v)}" for k, v in black.items())
    reason = f"white-box {pct(white_box)} vs {shown}" + (
        f": {name} is {pct(gap)} stronger" if gap > 0 else ": the white-box attacks are at least as strong")
    if notes:
        reason += " (" + "; ".join(notes) + ")"
    meaning = {
        PASS: "Gradient-based attacks do at least as well as attacks that never read a gradient, as they should "
              "when the gradients are informative.",
        WARN: "An attack without gradients does slightly better than the white-box ones: the gradients may be "
              "partly uninformative.",
        FAIL: "An attack that never reads a gradient beats the gradient attacks: the model's gradients are masked "
              "or obfuscated and white-box numbers overestimate its robustness.",
    }[status]
    return CheckResult("black_box", "white-box attacks beat black-box and transfer attacks", status, reason,
                       meaning, numbers)


def check_losses(*, losses: dict[str, float], pgd_best: float, autoattack: float | None, n: int,
                 thresholds: Thresholds, autoattack_note: str = "") -> CheckResult:
    """Check 4: CE, CW and DLR agree, and PGD is not far above AutoAttack (APGD)."""
    spread = max(losses.values()) - min(losses.values()) if losses else 0.0
    statuses = [judge_gap(spread, thresholds, n)]
    hi = max(losses, key=losses.get) if losses else ""
    lo = min(losses, key=losses.get) if losses else ""
    parts = [", ".join(f"PGD-{k.upper()} {pct(v)}" for k, v in losses.items()) + f" (spread {pct(spread)})"]
    numbers = {"losses": dict(losses), "spread": spread, "pgd_best": pgd_best, "autoattack": autoattack,
               "tolerance": thresholds.tolerance(n)}
    if autoattack is None:
        statuses.append(WARN)
        parts.append(f"AutoAttack not run ({autoattack_note or INSTALL_HINT})")
    else:
        gap = pgd_best - autoattack
        numbers["pgd_minus_autoattack"] = gap
        statuses.append(judge_gap(gap, thresholds, n))
        parts.append(f"best PGD {pct(pgd_best)} vs APGD-CE + APGD-T {pct(autoattack)} "
                     + (f"(PGD {pct(gap)} higher)" if gap > 0 else "(PGD not higher)"))
    status = worst(statuses)
    if statuses[0] != PASS:
        parts.append(f"PGD-{hi.upper()} is {pct(spread)} above PGD-{lo.upper()}")
    meaning = {
        PASS: "Different losses and a parameter-free attack ensemble reach the same accuracy: no single loss is "
              "being fooled.",
        WARN: "The losses or the attacks disagree somewhat (or AutoAttack did not run): prefer the lowest number "
              "and a stronger evaluation.",
        FAIL: "One loss or attack is far stronger than another on the same images: a loss is being masked (e.g. a "
              "saturated softmax flattens cross-entropy), so PGD on it overestimates robustness.",
    }[status]
    return CheckResult("losses", "CE, CW and DLR losses agree and PGD is not far above AutoAttack", status,
                       "; ".join(parts), meaning, numbers)


def check_gradients(*, zero: int, nonfinite: int, zero_clean: int, zero_random: int, n: int,
                    thresholds: Thresholds) -> CheckResult:
    """Check 5: the fraction of images whose input gradient is zero or non-finite."""
    bad = zero + nonfinite
    frac = bad / max(n, 1)
    if nonfinite:
        status = FAIL
    elif frac <= thresholds.grad_pass + 1e-12:
        status = PASS
    else:
        status = WARN if frac <= thresholds.grad_fail + 1e-12 else FAIL
    reason = (f"{bad} of {n} images ({pct(frac)}) have a zero or non-finite cross-entropy input gradient "
              f"({zero_clean} zero at the image, {zero_random} zero at a random point of the eps-ball, "
              f"{nonfinite} non-finite)")
    meaning = {
        PASS: "Gradients exist and are finite almost everywhere, so gradient attacks have something to follow.",
        WARN: "Some images give gradient attacks nothing to follow (a saturated softmax, a flat region): their "
              "PGD results rest on the random start alone.",
        FAIL: "Gradient attacks cannot move on these images (zero gradients: non-differentiable or saturated "
              "layers; non-finite: numerical breakage), the hallmark of gradient masking.",
    }[status]
    return CheckResult("gradients", "input gradients are non-zero and finite", status, reason, meaning,
                       {"zero_or_nonfinite": bad, "fraction": frac, "zero_clean": zero_clean,
                        "zero_random": zero_random, "nonfinite": nonfinite})


def classify_flag(flag: str) -> str:
    """FAIL for a flag that says the evaluation is unreliable, WARN for another flag."""
    low = flag.lower()
    return FAIL if any(word in low for word in _SEVERE) else WARN


def check_autoattack_flags(flags: Sequence[str] | None, *, note: str = "") -> CheckResult:
    """Check 6: AutoAttack's own sanity flags, surfaced."""
    title = "AutoAttack raises no sanity flag"
    if flags is None:
        return CheckResult("autoattack_flags", title, WARN, f"AutoAttack did not run: {note or INSTALL_HINT}",
                           "AutoAttack's checks for randomised, dynamic and gradient-masked models were not run.",
                           {"flags": None})
    if not flags:
        return CheckResult("autoattack_flags", title, PASS, "APGD and Square raised no flag",
                           "AutoAttack's own checks (randomness, logits, zero gradients, Square beating APGD) found "
                           "nothing suspicious.", {"flags": []})
    status = worst(classify_flag(f) for f in flags)
    meaning = ("AutoAttack itself says its evaluation of this model is unreliable (see "
               "https://github.com/fra31/auto-attack/blob/master/flags_doc.md)." if status == FAIL else
               "AutoAttack noted something about the setup; read the flag before trusting its number.")
    return CheckResult("autoattack_flags", title, status, "; ".join(flags), meaning, {"flags": list(flags)})
