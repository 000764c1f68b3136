"""A saved model evaluated under a protocol and its record written beside it: what
``robustrain eval`` does, as two library calls.

:func:`eval_files` says where the evaluation of a checkpoint will write (its per-protocol JSON
record, AutoAttack's resume state and log), so that a caller can check those paths before any
work; :func:`evaluate_saved` loads the model, picks the test split it was trained on (or another
with the same classes and image shape), evaluates it with :func:`~robustrain.eval.evaluate_checkpoint`
and writes the record atomically.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from robustrain.artifacts import FORMAT, ModelSpec, save_checkpoint
    >>> from robustrain.eval import build_eval_attacks
    >>> spec = ModelSpec.for_dataset("small_cnn", {"width": 4}, "synthetic")
    >>> config = {"model": {"name": "small_cnn", "width": 4}, "data": {"name": "synthetic"},
    ...           "method": {"name": "pgd_at", "eps": 8 / 255}}
    >>> d = Path(tempfile.mkdtemp())
    >>> save_checkpoint({"format": FORMAT, "config": config, "model_card": spec.to_dict(),
    ...                  "model": spec.build().state_dict(), "ema": None, "epoch": 2}, d / "last.pt")
    >>> files = eval_files(d, ["natural"], n=8)
    >>> files.checkpoint.name, files.out.name, files.aa_state
    ('last.pt', 'last-eval-natural-n8.json', None)
    >>> saved = evaluate_saved(files, build_eval_attacks(["natural"]), n=8)
    >>> saved.n, saved.dataset, sorted(saved.summary["accuracy"]), saved.out.is_file()
    (8, 'synthetic', ['natural'], True)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from robustrain.artifacts import check_dataset, eval_data, load_model
from robustrain.artifacts.run_dir import existing_checkpoint
from robustrain.attacks.autoattack import AutoAttackSpec, default_eps, parse_autoattack_name
from robustrain.data import load_eval_split
from robustrain.eval.records import eval_record_path
from robustrain.eval.robust import Attack, EvalRecord, evaluate_checkpoint
from robustrain.utils.errors import DatasetFileError, UsageError
from robustrain.utils.fileio import write_json

__all__ = ["EvalFiles", "SavedEvaluation", "eval_files", "evaluate_saved"]


@dataclass(frozen=True)
class EvalFiles:
    """Where one evaluation of ``checkpoint`` writes.

    Attributes:
        checkpoint: the file evaluated (a run folder resolved to its best.pt, else last.pt).
        out: the JSON record (one per protocol, :func:`~robustrain.eval.records.eval_record_path`).
        aa_state: AutoAttack's resume state folder; None when no AutoAttack is run.
        aa_log: AutoAttack's own log; None when no AutoAttack is run.
        keep_state: the caller chose ``aa_state``, so it is kept after a finished run.
    """

    checkpoint: Path
    out: Path
    aa_state: Path | None
    aa_log: Path | None
    keep_state: bool


def eval_files(checkpoint: str | Path, attacks: Sequence[str], *, norm: str = "Linf", eps: float | None = None,
               n: int | None = None, out: str | Path | None = None, aa_state: str | Path | None = None) -> EvalFiles:
    """The files an evaluation of ``checkpoint`` under ``attacks`` writes (nothing is created).

    Args:
        checkpoint: a ``best.pt`` / ``last.pt``, a run folder, or an exported ``OUT.pt``.
        attacks: the attack names (they name the record when they differ from the protocol's).
        norm, eps, n: the threat model and image count (they name the record too).
        out: the record's path (default ``CHECKPOINT-eval[-TAG].json``).
        aa_state: AutoAttack's resume folder (default ``OUT.aa-state``, removed when finished).

    Raises:
        CheckpointError: the file (or the run folder's best.pt / last.pt) does not exist.
    """
    ckpt = existing_checkpoint(checkpoint)
    record = Path(out) if out else eval_record_path(ckpt, list(attacks), norm, eps, n)
    uses_aa = any(parse_autoattack_name(a, norm=norm, eps=eps) is not None for a in attacks)
    state = (Path(aa_state) if aa_state else record.with_name(record.stem + ".aa-state")) if uses_aa else None
    log = record.with_name(record.stem + "-autoattack.log") if uses_aa else None
    return EvalFiles(ckpt, record, state, log, keep_state=aa_state is not None)


@dataclass
class SavedEvaluation:
    """What :func:`evaluate_saved` measured and wrote.

    Attributes:
        record: the model and its :class:`~robustrain.eval.RobustEvaluation`.
        summary: the JSON record written to ``out`` (checkpoint, weights, protocol, accuracies, flags).
        out: the record's path.
        dataset: the dataset whose test split was evaluated.
        n: the number of test images evaluated.
    """

    record: EvalRecord
    summary: dict[str, Any]
    out: Path
    dataset: str
    n: int


def evaluate_saved(files: EvalFiles, attacks: Mapping[str, Attack | None], *, norm: str = "Linf",
                   eps: float | None = None, n: int | None = None, dataset: str | None = None,
                   data_root: str | None = None, download: bool = False, device: torch.device | str = "cpu",
                   ema: bool = True, batch_size: int = 256, seed: int = 0, progress: bool = False,
                   aa_verbose: bool = False, notify: Callable[[str], None] | None = None) -> SavedEvaluation:
    """Evaluate ``files.checkpoint`` on the first ``n`` test images and write ``files.out``.

    Args:
        files: from :func:`eval_files` (their folders must be writable).
        attacks: built attacks by name (:func:`~robustrain.eval.build_eval_attacks`), with the
            ``norm`` and ``eps`` they were built with (recorded).
        n: the first ``n`` test images (default all). On a streaming dataset (``imagefolder``,
            ``webdataset``) only these are decoded, with the run's evaluation view: the default
            decodes the whole test split (50,000 JPEGs on ImageNet), so give ``n`` for a quick look.
        dataset: evaluate on this dataset's test split (default: the one trained on; same classes
            and image shape required).
        data_root: the dataset folder (default: the one in the saved config, for its own dataset);
            replaces the saved one when the folder moved (an export of a streaming model needs it).
        download: fetch missing test files.
        device, ema, batch_size, seed, progress, aa_verbose: as :func:`~robustrain.eval.evaluate_checkpoint`.
        notify: called with one line once the model and data are loaded and AutoAttack is about to
            start (where its resume state and log are); None: silent.

    Raises:
        CheckpointError: a corrupt or foreign file.
        UsageError: ``dataset`` does not match the model's classes or image shape (a ValueError).
        DatasetFileError: the test files are missing; a streaming folder moved (one line naming ``--data-root``).
    """
    loaded = load_model(files.checkpoint, device, ema=ema)
    # the test data of the saved config (a streaming run's folder and evaluation view too)
    data = eval_data(loaded, dataset, data_root, download=download)
    try:
        check_dataset(loaded, data)
    except DatasetFileError:  # missing files (a moved folder): exit 1 as everywhere, not a usage error
        raise
    except ValueError as e:  # exit 2 from the CLI: the user's choice of dataset
        raise UsageError(f"--dataset {dataset}: {e}" if dataset else str(e)) from None
    dataset = data.name
    split = load_eval_split(data, n)  # a streaming dataset: only these n images are decoded
    x, y = split.x, split.y
    n = int(x.shape[0])
    uses_aa = any(isinstance(a, AutoAttackSpec) for a in attacks.values())
    if uses_aa and notify is not None:
        notify(f"AutoAttack: state in {files.aa_state} (rerun the same command to continue an interrupted run), "
               f"log in {files.aa_log}")
    record = evaluate_checkpoint(files.checkpoint, x[:n], y[:n], attacks, device=device, loaded=loaded,
                                 batch_size=batch_size, seed=seed, progress=progress,
                                 aa_state=files.aa_state if uses_aa else None,
                                 aa_log=files.aa_log if uses_aa else None, aa_verbose=aa_verbose)
    summary = _summary(record, dataset, n, seed, norm, eps)
    write_json(summary, files.out)
    if uses_aa and not files.keep_state and files.aa_state is not None and files.aa_state.is_dir():
        shutil.rmtree(files.aa_state, ignore_errors=True)
    return SavedEvaluation(record, summary, files.out, dataset, n)


def _summary(record: EvalRecord, dataset: str, n: int, seed: int, norm: str, eps: float | None) -> dict[str, Any]:
    loaded, res = record.loaded, record.result
    return {
        "checkpoint": str(record.path), "source": loaded.meta.get("source"), "epoch": loaded.epoch,
        "weights": loaded.weights, "method": loaded.meta.get("method"), "model": loaded.meta.get("model"),
        "dataset": dataset, "trained_on": loaded.dataset, "n": n, "seed": seed,
        "norm": norm, "eps": eps if eps is not None else default_eps(norm),
        "attacks": list(res.accuracy), "protocol": res.protocol, "accuracy": res.accuracy,
        "autoattack_flags": {k: list(r.flags) for k, r in res.autoattack.items()},
        "autoattack": {k: {"accuracy": r.accuracy, "clean_accuracy": r.clean_accuracy, "flags": list(r.flags),
                           "settings": r.settings, "resumed_chunks": r.resumed_chunks, "log": r.log_path}
                       for k, r in res.autoattack.items()},
    }
