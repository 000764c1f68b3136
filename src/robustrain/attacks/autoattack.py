"""AutoAttack through the official package (``pyautoattack``), as a thin adapter.

Paper: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML 2020, arXiv:2003.01690. Nothing of the package is
vendored; this module only fixes the protocol around it:

- versions ``standard`` (APGD-CE, APGD-T, FAB-T, Square; the RobustBench protocol), ``plus``,
  ``rand`` (EOT for randomised defences) and ``custom`` (any list of the package's attacks);
- threat models ``Linf`` (default eps 8/255) and ``L2`` (default eps 0.5);
- always fp32 and eval mode, a fixed seed (the global RNG is restored afterwards);
- the package's sanity checks (randomised / dynamic defence, probabilities instead of logits,
  zero gradients, too many target classes, Square beating the gradient attacks) are captured
  as *flags* and returned, never lost in a log; the adapter adds its own checks (adversarial
  examples outside the eps-ball or [0, 1], predictions that change when re-evaluated);
- long runs are resumable: the images are attacked in chunks and a small JSON state of the
  finished chunks (:class:`~robustrain.attacks.autoattack_state.ChunkState`) is written
  atomically into ``state_dir`` after each one, keyed by a fingerprint of the settings, the
  data and the weights, so rerunning the same evaluation continues where it stopped (and a
  state of another model or setting is never reused): :func:`run_autoattack` is "for each
  chunk: skip if done, attack, record". pyautoattack's own ``state_path`` is not used: in
  version 0.2.0 it writes the attack set as a string, so a restored state never matches and
  raises;
- the package's verbose output goes to ``log_path`` (or nowhere); ``verbose=True`` also
  prints it.

A robust example is one whose clean prediction is right, that every attack of the version
failed on, and whose returned adversarial example is still classified correctly when
re-evaluated here.

Example:
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
    >>> x, y = torch.rand(6, 3, 4, 4), torch.randint(0, 10, (6,))
    >>> parse_autoattack_name("aa:apgd-ce+apgd-t").attacks
    ('apgd-ce', 'apgd-t')
    >>> quick = AutoAttackSpec("custom", ("apgd-ce",), options={"apgd.n_restarts": 1, "apgd.n_iter": 10})
    >>> res = quick.evaluate(net, x, y, progress=False)
    >>> 0.0 <= res.accuracy <= res.clean_accuracy <= 1.0
    True
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from robustrain.attacks.autoattack_state import ChunkState
from robustrain.data.batch import to_unit_float
from robustrain.utils.checks import check_int
from robustrain.utils.runtime import fp32_eval, preserved_rng

__all__ = [
    "AA_ATTACKS",
    "AA_NORMS",
    "AA_VERSIONS",
    "AutoAttackResult",
    "AutoAttackSpec",
    "autoattack",
    "canonical_norm",
    "default_eps",
    "parse_autoattack_name",
    "require_pyautoattack",
    "run_autoattack",
]

INSTALL_HINT = ("AutoAttack needs the pyautoattack package, a robustrain dependency that is missing here: "
                "pip install 'pyautoattack>=0.2' (or reinstall robustrain: pip install -e .)")
FLAGS_DOC = "https://github.com/fra31/auto-attack/blob/master/flags_doc.md"

#: the package's attack names (usable in a custom list)
AA_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
#: version -> attacks it runs (as set by pyautoattack's ``_set_version``); custom: user's list
AA_VERSIONS: dict[str, tuple[str, ...]] = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
    "custom": (),
}
#: threat model -> default radius (8/255: the CIFAR Linf protocol; 0.5: RobustBench CIFAR L2)
AA_NORMS: dict[str, float] = {"Linf": 8 / 255, "L2": 0.5}
_NAME_SUFFIX = {"": "standard", "-plus": "plus", "-rand": "rand"}
#: option prefix -> attribute of pyautoattack.AutoAttack holding that attack object
_PARTS = {"apgd": "apgd", "apgd_targeted": "apgd_targeted", "fab": "fab", "square": "square"}


def canonical_norm(norm: str) -> str:
    """``"linf"`` / ``"Linf"`` -> ``"Linf"``, ``"l2"`` -> ``"L2"``; ValueError otherwise.

    Example:
        >>> canonical_norm("linf"), canonical_norm("L2")
        ('Linf', 'L2')
    """
    for name in AA_NORMS:
        if isinstance(norm, str) and norm.lower() == name.lower():
            return name
    raise ValueError(f"unknown norm {norm!r}; use one of {', '.join(AA_NORMS)}")


def default_eps(norm: str) -> float:
    """The protocol's radius for ``norm``: 8/255 (Linf) or 0.5 (L2)."""
    return AA_NORMS[canonical_norm(norm)]


def require_pyautoattack():
    """The ``pyautoattack`` module; ImportError saying how to install it when missing."""
    try:
        import pyautoattack
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return pyautoattack


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class AutoAttackResult:
    """Outcome of one AutoAttack evaluation.

    Attributes:
        accuracy: robust accuracy in [0, 1].
        clean_accuracy: natural accuracy on the same images.
        n: number of images.
        flags: the package's sanity-check warnings and the adapter's own checks (empty when
            nothing looked suspicious); read them before trusting ``accuracy``.
        settings: version, attacks, norm, eps, seed, batch and chunk size, package version.
        resumed_chunks: chunks read from an earlier, interrupted run's state.
        log_path: where the package's verbose output went (None: discarded).
        robust: per image (bool, CPU, length ``n``): correctly classified on the clean image
            AND on AutoAttack's adversarial example (``accuracy`` is its mean); read from the
            resume state for resumed chunks. None when not known.
        clean: per image (bool, CPU): correctly classified on the clean image.
    """

    accuracy: float
    clean_accuracy: float
    n: int
    flags: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    resumed_chunks: int = 0
    log_path: str | None = None
    robust: Tensor | None = field(default=None, repr=False, compare=False)
    clean: Tensor | None = field(default=None, repr=False, compare=False)


# ------------------------------------------------------------------------------ spec
@dataclass(frozen=True)
class AutoAttackSpec:
    """An AutoAttack configuration, callable like the other attacks: ``spec(model, x, y)``.

    Args:
        version: ``standard`` (default) | ``plus`` | ``rand`` | ``custom``.
        attacks: the attack list for ``custom`` (names from :data:`AA_ATTACKS`); must be
            empty for the named versions.
        norm: ``Linf`` (default) | ``L2``.
        eps: radius (default: 8/255 for Linf, 0.5 for L2).
        chunk_size: images per resumable chunk of :meth:`evaluate` (default 1000).
        options: ``custom`` only: attributes of the package's attack objects to change,
            as ``{"PART.ATTR": value}`` with PART in ``apgd``, ``apgd_targeted``, ``fab``,
            ``square`` (e.g. ``{"apgd.n_restarts": 1, "apgd.n_iter": 20}`` for a quick
            check); stated in the protocol line. Default none.

    Calling it runs AutoAttack on one batch and returns the adversarial examples (for code
    that wants ``x_adv``); :meth:`evaluate` is the resumable, flag-reporting evaluation.
    """

    version: str = "standard"
    attacks: tuple[str, ...] = ()
    norm: str = "Linf"
    eps: float | None = None
    chunk_size: int = 1000
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.version not in AA_VERSIONS:
            raise ValueError(f"unknown AutoAttack version {self.version!r}; use one of {', '.join(AA_VERSIONS)}")
        object.__setattr__(self, "attacks", tuple(self.attacks))
        object.__setattr__(self, "norm", canonical_norm(self.norm))
        if self.version == "custom":
            if not self.attacks:
                raise ValueError("a custom AutoAttack needs attacks, e.g. aa:apgd-ce+apgd-t")
            bad = [a for a in self.attacks if a not in AA_ATTACKS]
            if bad:
                raise ValueError(f"unknown AutoAttack attack {bad[0]!r}; use {', '.join(AA_ATTACKS)}")
            if len(set(self.attacks)) != len(self.attacks):
                raise ValueError(f"AutoAttack attack list {'+'.join(self.attacks)} repeats an attack; list each once")
        elif self.attacks:
            raise ValueError(f"AutoAttack version {self.version!r} fixes its attacks; use version='custom' for a list")
        if self.eps is None:
            object.__setattr__(self, "eps", AA_NORMS[self.norm])
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not self.eps > 0:
            raise ValueError(f"AutoAttack eps must be a positive number, got {self.eps!r}")
        object.__setattr__(self, "eps", float(self.eps))
        options = self.options.items() if isinstance(self.options, Mapping) else self.options
        object.__setattr__(self, "options", tuple(sorted((str(k), v) for k, v in options)))
        if self.options and self.version != "custom":
            raise ValueError("AutoAttack options change the attacks; they need a custom list (aa:ATTACK+...)")
        for key, _ in self.options:
            part, _, attr = key.partition(".")
            if part not in _PARTS or not attr:
                raise ValueError(f"unknown AutoAttack option {key!r}; use PART.ATTR with PART in {', '.join(_PARTS)}")
        check_int("chunk_size", self.chunk_size)

    @property
    def attacks_to_run(self) -> tuple[str, ...]:
        """The attacks this configuration runs, in order."""
        return self.attacks if self.version == "custom" else AA_VERSIONS[self.version]

    def describe(self) -> str:
        """One line for protocol statements, e.g. ``AutoAttack standard (apgd-ce, ...)``."""
        opts = "".join(f", {k}={v}" for k, v in self.options)
        return f"AutoAttack {self.version} ({', '.join(self.attacks_to_run)}{opts}; official pyautoattack)"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return autoattack(model, x, y, version=self.version, attacks=self.attacks or None,
                          norm=self.norm, eps=self.eps, options=dict(self.options))

    def evaluate(self, model: nn.Module, images: Tensor, labels: Tensor, **kwargs: Any) -> AutoAttackResult:
        """:func:`run_autoattack` with this configuration; ``kwargs`` as there."""
        kwargs.setdefault("chunk_size", self.chunk_size)
        return run_autoattack(model, images, labels, version=self.version, attacks=self.attacks or None,
                              norm=self.norm, eps=self.eps, options=dict(self.options), **kwargs)


def parse_autoattack_name(name: str, *, norm: str = "Linf", eps: float | None = None) -> AutoAttackSpec | None:
    """The AutoAttack named by an evaluation attack name; None when ``name`` is not one.

    Names: ``aa`` (standard), ``aa-plus``, ``aa-rand`` and ``aa:ATTACK+ATTACK...`` (custom,
    e.g. ``aa:apgd-ce+apgd-t``).

    Raises:
        ValueError: a malformed AutoAttack name (the message lists the valid forms).

    Example:
        >>> parse_autoattack_name("aa").attacks_to_run
        ('apgd-ce', 'apgd-t', 'fab-t', 'square')
        >>> parse_autoattack_name("pgd20") is None
        True
    """
    if name.startswith("aa:"):
        attacks = tuple(a.strip() for a in name[3:].split("+") if a.strip())
        return AutoAttackSpec("custom", attacks, norm=norm, eps=eps)
    if name == "aa" or name.startswith("aa-"):
        version = _NAME_SUFFIX.get(name[2:])
        if version is None:
            raise ValueError(
                f"unknown AutoAttack name {name!r}; use aa, aa-plus, aa-rand or aa:ATTACK+... "
                f"with attacks from {', '.join(AA_ATTACKS)}"
            )
        return AutoAttackSpec(version, norm=norm, eps=eps)
    return None


# ------------------------------------------------------------------------ flag capture
class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _clean_flag(message: str) -> str:
    return " ".join(message.replace("See flags_doc.md for details.", f"See {FLAGS_DOC}").split())


@contextlib.contextmanager
def _captured(log_path: Path | None, verbose: bool) -> Iterator[list[str]]:
    """Route the package's logger, prints and warnings: flags into the yielded list, the
    verbose output into ``log_path`` (appended) and, with ``verbose``, to stderr."""
    logger = logging.getLogger("auto-attack")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    collector = _Collector()
    handlers: list[logging.Handler] = [collector]
    file_handler = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_path, mode="a", encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handlers.append(file_handler)
    if verbose:
        handlers.append(logging.StreamHandler())
    logger.handlers = handlers
    logger.setLevel(logging.DEBUG if (file_handler or verbose) else logging.WARNING)
    logger.propagate = False  # keep the package's chatter out of the user's root logger
    flags: list[str] = []
    stdout = io.StringIO()
    try:
        # the package prints a few lines itself (e.g. Square on non-square images)
        to_log = contextlib.redirect_stdout(stdout) if not verbose else contextlib.nullcontext()
        with warnings.catch_warnings(record=True) as caught, to_log:
            warnings.simplefilter("always")
            yield flags
    finally:
        logger.handlers, logger.level, logger.propagate = saved[2], saved[0], saved[1]
        if file_handler is not None:
            file_handler.close()
            if stdout.getvalue():
                with log_path.open("a", encoding="utf-8") as f:
                    f.write(stdout.getvalue())
        flags.extend(_clean_flag(m) for m in collector.messages)
        for w in caught:
            if "pyautoattack" in str(w.filename):
                flags.append(_clean_flag(str(w.message)))
            else:  # not ours to swallow: hand it back to the caller's warning filters
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


# ------------------------------------------------------------------------- one chunk
def _build(pyautoattack, model: nn.Module, spec: AutoAttackSpec, *, seed: int, device: torch.device,
           num_classes: int) -> tuple[Any, list[str]]:
    aa = pyautoattack.AutoAttack(model, attacks=list(spec.attacks) if spec.version == "custom" else None,
                                 device=device, eps=spec.eps, norm=spec.norm, seed=seed, version=spec.version)
    for key, value in spec.options:
        part, _, attr = key.partition(".")
        target = getattr(aa, _PARTS[part])
        if not hasattr(target, attr):
            raise ValueError(f"unknown AutoAttack option {key!r}: {type(target).__name__} has no attribute {attr!r}")
        setattr(target, attr, value)
    notes = []
    # targeted attacks aim at the 9 runner-up classes; with fewer classes the package would
    # index past the logits, so aim at all C - 1 other classes instead (and say so)
    for part, label in ((aa.apgd_targeted, "apgd-t"), (aa.fab, "fab-t")):
        if label in aa.attacks_to_run and part.n_target_classes > num_classes - 1:
            notes.append(f"{label}: {num_classes} classes, so {num_classes - 1} target classes "
                         f"instead of {part.n_target_classes}")
            part.n_target_classes = max(num_classes - 1, 1)
    return aa, notes


def _build_for(pyautoattack, model: nn.Module, spec: AutoAttackSpec, x: Tensor, *, seed: int,
               device: torch.device) -> tuple[Any, list[str]]:
    """:func:`_build` with the number of classes read from the model's output on ``x[:1]``."""
    with torch.no_grad():
        num_classes = int(model(x[:1].to(device)).shape[1])
    return _build(pyautoattack, model, spec, seed=seed, device=device, num_classes=num_classes)


def _predict(model: nn.Module, x: Tensor, device: torch.device, batch_size: int) -> Tensor:
    """Predicted labels of ``x`` (on the host), with ONE device-to-host copy per call, not one per batch."""
    with torch.no_grad():
        preds = [model(x[i : i + batch_size].to(device)).argmax(1) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(preds).cpu() if preds else torch.zeros(0, dtype=torch.long)


def _perturbation_norm(delta: Tensor, norm: str) -> Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(p=2, dim=1)


def _attack_chunk(aa: Any, model: nn.Module, x: Tensor, y: Tensor, *, norm: str, eps: float,
                  device: torch.device, batch_size: int) -> tuple[Tensor, Tensor, Tensor, list[str]]:
    """(x_adv, clean-correct flags, robust flags, adapter flags) for one chunk (all on CPU)."""
    x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    x_adv = x_adv.detach().cpu()  # a no-op: the package returns its examples where x is (the host)
    clean = _predict(model, x, device, batch_size) == y
    again = _predict(model, x_adv, device, batch_size) == y
    notes = []
    size = _perturbation_norm(x_adv - x, norm)
    outside = int((size > eps * (1 + 1e-5) + 1e-7).sum()) + int(((x_adv < 0) | (x_adv > 1)).flatten(1).any(1).sum())
    if outside:
        notes.append(f"{outside} adversarial examples lie outside the {norm} eps-ball or [0, 1]; "
                     "the reported accuracy is not valid for this threat model")
    flipped = int((~again & (x_adv == x).flatten(1).all(1) & clean).sum())
    if flipped:
        notes.append(f"{flipped} unperturbed images changed prediction when re-evaluated: the model is not "
                     "deterministic in eval mode (randomised defence? use aa-rand)")
    return x_adv, clean, clean & again, notes


# --------------------------------------------------------------------------- public
def _check_inputs(images: Tensor, labels: Tensor, batch_size: int) -> None:
    if images.ndim < 2 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0] if images.ndim else 0} images but {labels.shape[0]} labels; "
                         "pass one label per image")
    check_int("batch_size", batch_size)


def run_autoattack(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    version: str = "standard",
    attacks: list[str] | tuple[str, ...] | None = None,
    norm: str = "Linf",
    eps: float | None = None,
    options: Mapping[str, Any] | None = None,
    batch_size: int = 256,
    chunk_size: int = 1000,
    device: torch.device | str | None = None,
    seed: int = 0,
    state_dir: str | Path | None = None,
    log_path: str | Path | None = None,
    progress: bool = True,
    verbose: bool = False,
    desc: str = "AutoAttack",
) -> AutoAttackResult:
    """Robust accuracy under AutoAttack (official package), resumable, with its sanity flags.

    Paper: Croce & Hein, ICML 2020, arXiv:2003.01690.

    Args:
        model: a [0,1]-input classifier returning logits; evaluated in fp32 and eval mode
            (its train/eval flag is restored afterwards).
        images: uint8 (N, C, H, W) in 0..255 or float in [0, 1], on any device.
        labels: int64 (N,).
        version: ``standard`` (default) | ``plus`` | ``rand`` | ``custom``.
        attacks: the list for ``custom`` (from :data:`AA_ATTACKS`), else None.
        norm: ``Linf`` (default) | ``L2``.
        eps: radius (default 8/255 for Linf, 0.5 for L2).
        options: ``custom`` only: ``{"PART.ATTR": value}`` changes to the package's attack
            objects (see :class:`AutoAttackSpec`).
        batch_size: the package's batch size (default 256).
        chunk_size: images per chunk; the state is saved after each (default 1000).
        device: where the model runs (default: the model's device).
        seed: seed of every attack's randomness (default 0; the global RNG is restored).
        state_dir: folder for the resume state (``aa-<fingerprint>.json``) and, unless
            ``log_path`` is given, the package's log (``aa-<fingerprint>.log``). None: no
            resume. The state of a finished run is kept (a rerun returns at once); delete
            the folder to start over.
        log_path: file the package's verbose output is appended to (default: see above).
        progress: tqdm bar over images (disabled when False).
        verbose: also print the package's output.
        desc: progress-bar label.

    Returns:
        :class:`AutoAttackResult` (accuracy, clean accuracy, flags, settings).

    Raises:
        ImportError: pyautoattack is not installed (the message says how to install it).
        ValueError: invalid version, attack list, norm, eps or shapes.
    """
    spec = AutoAttackSpec(version, tuple(attacks or ()), norm=norm, eps=eps, chunk_size=chunk_size,
                          options=tuple((options or {}).items()))
    _check_inputs(images, labels, batch_size)
    pyautoattack = require_pyautoattack()
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    n = int(images.shape[0])
    settings = {
        "version": spec.version, "attacks": list(spec.attacks_to_run), "norm": spec.norm, "eps": spec.eps,
        "seed": int(seed), "batch_size": int(batch_size), "chunk_size": spec.chunk_size, "n": n,
        "options": {k: v for k, v in spec.options},
        "package": f"pyautoattack {getattr(pyautoattack, '__version__', '?')}",
    }
    state = ChunkState.open(state_dir, model, images, labels, settings)
    log = Path(log_path) if log_path is not None else state.log_path
    starts = list(range(0, n, spec.chunk_size))
    resumed = state.count_done(starts)
    flags: list[str] = []
    clean_all, robust_all = [], []
    bar = tqdm(total=n, desc=desc, unit="img", leave=False, disable=not progress)
    try:
        with preserved_rng(), fp32_eval(model):
            aa, notes = None, []
            for start in starts:
                stop = min(start + spec.chunk_size, n)
                if not state.is_done(start):
                    # chunks live on the host by design: the official package moves each of its batches to
                    # the model's device itself, and a chunk's result is written to the resume state on disk;
                    # one copy per chunk of thousands of images, outside any training step
                    x = to_unit_float(images[start:stop].detach().cpu())
                    y = labels[start:stop].detach().cpu().long()
                    with _captured(log, verbose) as chunk_flags:
                        if aa is None:  # built once, on the first chunk that needs it
                            aa, notes = _build_for(pyautoattack, model, spec, x, seed=seed, device=device)
                            aa.verbose = log is not None or verbose
                        _, clean, robust, checks = _attack_chunk(aa, model, x, y, norm=spec.norm, eps=spec.eps,
                                                                 device=device, batch_size=batch_size)
                    state.record(start, clean, robust, list(dict.fromkeys(notes + chunk_flags + checks)))
                clean, robust, chunk_flags = state.result(start)
                clean_all.append(clean)
                robust_all.append(robust)
                flags.extend(f for f in chunk_flags if f not in flags)
                bar.update(stop - start)
    finally:
        bar.close()
    clean_t = torch.cat(clean_all) if clean_all else torch.zeros(0, dtype=torch.bool)
    robust_t = torch.cat(robust_all) if robust_all else torch.zeros(0, dtype=torch.bool)
    return AutoAttackResult(
        accuracy=float(robust_t.sum()) / max(n, 1),
        clean_accuracy=float(clean_t.sum()) / max(n, 1),
        n=n,
        flags=tuple(flags),
        settings=settings,
        resumed_chunks=resumed,
        log_path=str(log) if log is not None else None,
        robust=robust_t,
        clean=clean_t,
    )


def autoattack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    version: str = "standard",
    attacks: list[str] | tuple[str, ...] | None = None,
    norm: str = "Linf",
    eps: float | None = None,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    batch_size: int | None = None,
) -> Tensor:
    """AutoAttack adversarial examples for one batch (the attack contract's functional form).

    Returns a detached tensor like ``x`` inside the ``norm`` ball of radius ``eps`` ∩ [0, 1];
    examples already misclassified or never broken are returned unchanged. fp32, eval mode,
    the model's train/eval flag and the global RNG restored. Sanity flags are re-issued as
    ``UserWarning``; use :func:`run_autoattack` for accuracies, flags and resume.

    Args: as :func:`run_autoattack` (``batch_size`` default: the whole batch).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
        >>> x = torch.rand(3, 3, 2, 2)
        >>> x_adv = autoattack(net, x, torch.tensor([0, 1, 2]), attacks=["apgd-ce"], version="custom",
        ...                    options={"apgd.n_restarts": 1, "apgd.n_iter": 10})
        >>> bool((x_adv - x).abs().max() <= 8 / 255 + 1e-6)
        True
    """

    spec = AutoAttackSpec(version, tuple(attacks or ()), norm=norm, eps=eps, options=tuple((options or {}).items()))
    bs = batch_size or max(int(x.shape[0]), 1)
    _check_inputs(x, y, bs)
    pyautoattack = require_pyautoattack()
    device = next(model.parameters()).device
    with preserved_rng(), fp32_eval(model), _captured(None, False) as flags:
        xc, yc = to_unit_float(x.detach().cpu()), y.detach().cpu().long()
        aa, notes = _build_for(pyautoattack, model, spec, xc, seed=seed, device=device)
        aa.verbose = False
        x_adv, _ = aa.run_standard_evaluation(xc, yc, batch_size=bs)
    for message in dict.fromkeys(notes + flags):
        warnings.warn(f"AutoAttack flag: {message}", stacklevel=2)
    return x_adv.detach().to(device=x.device, dtype=torch.float32)

