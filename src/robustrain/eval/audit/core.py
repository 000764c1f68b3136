"""The audit's vocabulary: statuses, one check's result, the settings and thresholds, the report.

Every check is judged by one rule with two gaps, so the verdicts are comparable: a difference
of accuracies ``d`` (in [0, 1], on the same images) is PASS when ``d <= tolerance(n)``, WARN
when ``d <= fail_gap`` and FAIL above. ``tolerance(n) = max(tol, 2 / n)``: two images' worth
of noise is never a finding.

Example:
    >>> t = Thresholds()
    >>> t.tolerance(256), t.tolerance(32)
    (0.05, 0.0625)
    >>> judge_gap(0.04, t, 256), judge_gap(0.08, t, 256), judge_gap(0.2, t, 256)
    ('PASS', 'WARN', 'FAIL')
    >>> worst(["PASS", "WARN", "PASS"]), worst([])
    ('WARN', 'PASS')
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

__all__ = [
    "FAIL",
    "PASS",
    "STATUSES",
    "WARN",
    "AdaptiveResult",
    "AuditReport",
    "AuditSettings",
    "CheckResult",
    "Thresholds",
    "judge_gap",
    "worst",
]

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
#: statuses from best to worst
STATUSES = (PASS, WARN, FAIL)


def worst(statuses: Iterable[str]) -> str:
    """The worst of ``statuses`` (PASS for none)."""
    return max(statuses, key=STATUSES.index, default=PASS)


@dataclass(frozen=True)
class Thresholds:
    """The numbers the checks are judged by (fractions of the audited images).

    Attributes:
        tol: a gap between two accuracies up to ``max(tol, 2 / n)`` is noise (PASS).
        fail_gap: a gap above this is a FAIL (between the two: WARN).
        unbounded_pass: accuracy at the unbounded radius up to this (or one image) is ~0: PASS.
        unbounded_fail: above this, FAIL (between the two: WARN).
        grad_pass: fraction of images with a zero / non-finite input gradient up to this: PASS.
        grad_fail: above this, FAIL (between the two: WARN).
    """

    tol: float = 0.05
    fail_gap: float = 0.10
    unbounded_pass: float = 0.01
    unbounded_fail: float = 0.05
    grad_pass: float = 0.01
    grad_fail: float = 0.10

    def tolerance(self, n: int) -> float:
        """``max(tol, 2 / n)``: the gap below which a difference is noise on ``n`` images."""
        return max(self.tol, 2.0 / max(n, 1))


def judge_gap(gap: float, thresholds: Thresholds, n: int) -> str:
    """PASS / WARN / FAIL for an accuracy gap that should be ~0 (see the module docstring)."""
    if gap <= thresholds.tolerance(n) + 1e-12:
        return PASS
    return WARN if gap <= thresholds.fail_gap + 1e-12 else FAIL


@dataclass(frozen=True)
class AuditSettings:
    """How much attacking the audit does. :meth:`for_mode` gives the two presets.

    Attributes:
        eps: Linf radius of the threat model under audit (default 8/255).
        quick: the cheaper preset (fewer steps, restarts, queries).
        sweep_factors: the eps grid of check 1 as multiples of ``eps`` (0 = clean), followed by
            the unbounded radius 1.0 (the whole [0, 1] pixel box).
        sweep_steps: PGD steps per radius of the sweep (step size radius / 4).
        steps: PGD-CE steps of the convergence run (step eps / 4).
        short_steps: the "PGD-20" point that the long run is compared with.
        restarts: random restarts of the long run (the first included).
        loss_steps: PGD steps of the CE / CW / DLR comparison.
        aa_iters: iterations of APGD-CE and APGD-T (one restart each).
        aa_targets: target classes of APGD-T.
        square_queries: queries of the Square attack (black box).
        transfer_steps: PGD-CE steps on the surrogate of the transfer attack.
        eot_samples: random forwards averaged per step of the EOT-PGD rerun (randomized models).
        seed: seed of every random start (and AutoAttack's).
        batch_size: images per forward / attack batch.
        thresholds: see :class:`Thresholds`.
    """

    eps: float = 8 / 255
    quick: bool = False
    sweep_factors: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
    sweep_steps: int = 20
    steps: int = 100
    short_steps: int = 20
    restarts: int = 2
    loss_steps: int = 30
    aa_iters: int = 50
    aa_targets: int = 2
    square_queries: int = 500
    transfer_steps: int = 20
    eot_samples: int = 16
    seed: int = 0
    batch_size: int = 256
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def for_mode(cls, quick: bool = False, **overrides: Any) -> "AuditSettings":
        """The default preset, or with ``quick`` the cheaper one; ``overrides`` replace fields."""
        base: dict[str, Any] = {}
        if quick:
            base = dict(quick=True, sweep_factors=(0.0, 0.5, 1.0, 2.0, 8.0), sweep_steps=10, steps=50,
                        short_steps=10, restarts=2, loss_steps=20, aa_iters=25, aa_targets=1,
                        square_queries=300, transfer_steps=10, eot_samples=8)
        base.update(overrides)
        return cls(**base)

    def sweep_radii(self) -> list[float]:
        """The eps grid of check 1: ``factor * eps`` below 1, then the unbounded radius 1.0."""
        radii = sorted({min(f * self.eps, 1.0) for f in self.sweep_factors} | {1.0})
        return radii

    def describe(self) -> str:
        """One line of what was run."""
        return (f"Linf eps={self.eps:.6g}; sweep PGD-{self.sweep_steps}-CE over {len(self.sweep_radii())} radii; "
                f"PGD-CE {self.short_steps} vs {self.steps} steps x {self.restarts} restarts (step eps/4); "
                f"CE/CW/DLR PGD-{self.loss_steps}; APGD-CE + APGD-T ({self.aa_iters} iterations, "
                f"{self.aa_targets} targets); Square {self.square_queries} queries; adaptive reruns of "
                f"PGD-{self.short_steps}: EOT x {self.eot_samples} when random, BPDA when a preprocessing is named; "
                f"seed {self.seed}; fp32, eval mode")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sweep_radii"] = self.sweep_radii()
        return d


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome.

    Attributes:
        key: short identifier (``eps_sweep``, ``convergence``, ``black_box``, ``losses``,
            ``gradients``, ``autoattack_flags``).
        title: what is checked, one line.
        status: PASS, WARN or FAIL.
        reason: one sentence with the numbers behind the status.
        meaning: one sentence of what the status means for the robustness number.
        numbers: the measurements (JSON-serialisable).
    """

    key: str
    title: str
    status: str
    reason: str
    meaning: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AdaptiveResult:
    """An adaptive rerun of the audit's PGD (Athalye et al. 2018; Tramer et al. 2020, "On Adaptive
    Attacks to Adversarial Example Defenses"), triggered by a check's finding.

    Both accuracies are measured the same way as ``robustrain eval``'s: the attack's final x_adv
    classified by one ordinary forward of the model (random for a randomized model).

    Attributes:
        key: ``eot`` (the model is random) or ``bpda`` (zero / shattered gradients).
        trigger: what was found, with its numbers.
        baseline: the attack whose number a plain evaluation reports (``PGD-20``).
        attack: the adaptive attack (``EOT-PGD-20x16``, ``BPDA + PGD-20``); empty when it could
            not run.
        reported: accuracy under ``baseline``; None when the rerun could not run.
        adaptive: accuracy under ``attack``; None when it could not run.
        note: what to do when it could not run (how to name the preprocessing).

    Example:
        >>> r = AdaptiveResult("eot", "outputs differ between two passes on 8 of 8 images", "PGD-20",
        ...                    "EOT-PGD-20x16", 0.9, 0.05)
        >>> r.line()
        'PGD-20 reported 90.0%, adaptive 5.0% with EOT-PGD-20x16 (outputs differ between two passes on 8 of 8 images)'
    """

    key: str
    trigger: str
    baseline: str
    attack: str
    reported: float | None
    adaptive: float | None
    note: str = ""

    def line(self) -> str:
        """One line: "reported X%, adaptive Y%" with the attacks and the trigger, or the note."""
        if self.reported is None or self.adaptive is None:
            return f"{self.trigger}: {self.note}"
        return (f"{self.baseline} reported {100 * self.reported:.1f}%, adaptive {100 * self.adaptive:.1f}% with "
                f"{self.attack} ({self.trigger})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AuditReport:
    """The audit: one :class:`CheckResult` per check and the overall verdict (the worst).

    Attributes:
        checks: the results in check order.
        n: images audited.
        clean_accuracy: natural accuracy on them.
        robust_accuracy: the lowest accuracy any attack of the audit reached at ``eps`` (the
            best estimate of robust accuracy this audit has).
        settings: :class:`AuditSettings` used.
        curves: the series of the figure (``eps``: radii and accuracies; ``steps``: the
            accuracy after each PGD step of the first run, then after each restart).
        meta: what was audited (path, model, dataset ...), filled by the caller.
        seconds: wall time of the audit.
        adaptive: the adaptive reruns the checks' findings triggered (:class:`AdaptiveResult`):
            EOT-PGD for a random model, BPDA for zero gradients; empty for an honest model.
    """

    checks: list[CheckResult]
    n: int
    clean_accuracy: float
    robust_accuracy: float
    settings: AuditSettings
    curves: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    adaptive: list[AdaptiveResult] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """The worst status of the checks."""
        return worst(c.status for c in self.checks)

    def check(self, key: str) -> CheckResult:
        """The result of the check named ``key``."""
        for c in self.checks:
            if c.key == key:
                return c
        raise KeyError(f"no check {key!r}; checks: {', '.join(c.key for c in self.checks)}")

    def summary(self) -> str:
        """One line: the verdict and the checks that did not pass."""
        bad = [f"{c.key} {c.status}" for c in self.checks if c.status != PASS]
        return f"verdict {self.verdict}" + (f" ({', '.join(bad)})" if bad else " (all checks passed)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "n": self.n,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "checks": [c.to_dict() for c in self.checks],
            "adaptive": [r.to_dict() for r in self.adaptive],
            "settings": self.settings.to_dict(),
            "protocol": self.settings.describe(),
            "curves": self.curves,
            "meta": self.meta,
            "seconds": round(self.seconds, 1),
        }
