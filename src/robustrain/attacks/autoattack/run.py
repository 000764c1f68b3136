"""Running AutoAttack: :func:`run_autoattack` (resumable, with flags) and :func:`autoattack`.

:func:`run_autoattack` is "for each chunk: skip if done, attack, record": the images are
attacked in chunks (:func:`~robustrain.attacks.autoattack.chunk.attack_chunk`) and each
chunk's outcome is written to the resume state
(:class:`~robustrain.attacks.autoattack.state.ChunkState`) before the next one starts.
:func:`autoattack` is the attack contract's functional form (adversarial examples of one batch).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from robustrain.attacks.autoattack.chunk import attack_chunk, build_for
from robustrain.attacks.autoattack.flags import captured
from robustrain.attacks.autoattack.protocol import SpecFields, require_pyautoattack
from robustrain.attacks.autoattack.results import AutoAttackResult
from robustrain.attacks.autoattack.state import ChunkState
from robustrain.data.batch import to_unit_float
from robustrain.utils.checks import check_int
from robustrain.utils.runtime import fp32_eval, preserved_rng

__all__ = ["autoattack", "check_inputs", "run_autoattack"]


def check_inputs(images: Tensor, labels: Tensor, batch_size: int) -> None:
    """ValueError unless there is one label per image and ``batch_size`` is an int >= 1."""
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
        attacks: the list for ``custom`` (from :data:`~robustrain.attacks.autoattack.AA_ATTACKS`),
            else None.
        norm: ``Linf`` (default) | ``L2``.
        eps: radius (default 8/255 for Linf, 0.5 for L2).
        options: ``custom`` only: ``{"PART.ATTR": value}`` changes to the package's attack
            objects (see :class:`~robustrain.attacks.autoattack.AutoAttackSpec`).
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
    spec = SpecFields(version, tuple(attacks or ()), norm=norm, eps=eps, chunk_size=chunk_size,
                      options=tuple((options or {}).items()))
    check_inputs(images, labels, batch_size)
    pyautoattack = require_pyautoattack()
    device = torch.device(next(model.parameters()).device if device is None else device)
    settings = _settings(spec, pyautoattack, seed=seed, batch_size=batch_size, n=int(images.shape[0]))
    state = ChunkState.open(state_dir, model, images, labels, settings)
    log = Path(log_path) if log_path is not None else state.log_path
    attacker = _Attacker(pyautoattack, model, spec, seed, device, batch_size, log, verbose)
    with tqdm(total=settings["n"], desc=desc, unit="img", leave=False, disable=not progress) as bar:
        return _attack_all(attacker, state, images, labels, bar)


def _settings(spec: SpecFields, pyautoattack, *, seed: int, batch_size: int, n: int) -> dict[str, Any]:
    """The settings of one evaluation: returned with the result and part of the resume key."""
    return {
        "version": spec.version, "attacks": list(spec.attacks_to_run), "norm": spec.norm, "eps": spec.eps,
        "seed": int(seed), "batch_size": int(batch_size), "chunk_size": spec.chunk_size, "n": n,
        "options": {k: v for k, v in spec.options},
        "package": f"pyautoattack {getattr(pyautoattack, '__version__', '?')}",
    }


@dataclass
class _Attacker:
    """Attacks the chunks of one evaluation with the package's attack, built once, on the first
    chunk that needs it (a fully resumed run never builds it)."""

    pyautoattack: Any
    model: nn.Module
    spec: SpecFields
    seed: int
    device: torch.device
    batch_size: int
    log: Path | None
    verbose: bool
    aa: Any = None
    notes: list[str] = field(default_factory=list)

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, list[str]]:
        """(clean-correct flags, robust flags, sanity flags) of one chunk on the host."""
        with captured(self.log, self.verbose) as chunk_flags:
            if self.aa is None:
                self.aa, self.notes = build_for(self.pyautoattack, self.model, self.spec, x, seed=self.seed,
                                                device=self.device)
                self.aa.verbose = self.log is not None or self.verbose
            _, clean, robust, checks = attack_chunk(self.aa, self.model, x, y, norm=self.spec.norm,
                                                    eps=self.spec.eps, device=self.device,
                                                    batch_size=self.batch_size)
        # chunk_flags is filled when the capture ends, so it is read after the with block
        return clean, robust, list(dict.fromkeys(self.notes + chunk_flags + checks))


def _host_chunk(images: Tensor, labels: Tensor, start: int, stop: int) -> tuple[Tensor, Tensor]:
    """Images (float in [0, 1]) and labels (int64) of one chunk, on the host."""
    # chunks live on the host by design: the official package moves each of its batches to
    # the model's device itself, and a chunk's result is written to the resume state on disk;
    # one copy per chunk of thousands of images, outside any training step
    return to_unit_float(images[start:stop].detach().cpu()), labels[start:stop].detach().cpu().long()


def _attack_all(attacker: _Attacker, state: ChunkState, images: Tensor, labels: Tensor,
                bar: tqdm) -> AutoAttackResult:
    """Attack every chunk not finished in ``state``, recording each, and gather the result."""
    n, size = state.settings["n"], attacker.spec.chunk_size
    starts = list(range(0, n, size))
    resumed = state.count_done(starts)
    flags: list[str] = []
    clean_all, robust_all = [], []
    with preserved_rng(), fp32_eval(attacker.model):
        for start in starts:
            stop = min(start + size, n)
            if not state.is_done(start):
                state.record(start, *attacker(*_host_chunk(images, labels, start, stop)))
            clean, robust, chunk_flags = state.result(start)
            clean_all.append(clean)
            robust_all.append(robust)
            flags.extend(f for f in chunk_flags if f not in flags)
            bar.update(stop - start)
    clean_t = torch.cat(clean_all) if clean_all else torch.zeros(0, dtype=torch.bool)
    robust_t = torch.cat(robust_all) if robust_all else torch.zeros(0, dtype=torch.bool)
    return AutoAttackResult(
        accuracy=float(robust_t.sum()) / max(n, 1),
        clean_accuracy=float(clean_t.sum()) / max(n, 1),
        n=n,
        flags=tuple(flags),
        settings=state.settings,
        resumed_chunks=resumed,
        log_path=str(attacker.log) if attacker.log is not None else None,
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
    spec = SpecFields(version, tuple(attacks or ()), norm=norm, eps=eps, options=tuple((options or {}).items()))
    bs = batch_size or max(int(x.shape[0]), 1)
    check_inputs(x, y, bs)
    pyautoattack = require_pyautoattack()
    device = next(model.parameters()).device
    with preserved_rng(), fp32_eval(model), captured(None, False) as flags:
        # the official package takes host tensors and moves each of its batches to the device
        xc, yc = to_unit_float(x.detach().cpu()), y.detach().cpu().long()
        aa, notes = build_for(pyautoattack, model, spec, xc, seed=seed, device=device)
        aa.verbose = False
        x_adv, _ = aa.run_standard_evaluation(xc, yc, batch_size=bs)
    for message in dict.fromkeys(notes + flags):
        warnings.warn(f"AutoAttack flag: {message}", stacklevel=2)
    return x_adv.detach().to(device=x.device, dtype=torch.float32)
