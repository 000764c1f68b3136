"""Experiment trackers (issue 21) with the real packages and local backends: MLflow's default
SQLite store read back through ``MlflowClient``, W&B in offline mode (its ``.wandb`` files read
record by record), TensorBoard event files through ``EventAccumulator``. One run, interrupted
after epoch 1 and resumed, must be ONE tracker run per backend: the same id, every step once."""

from __future__ import annotations

import importlib
import json
import time
import warnings
from pathlib import Path

import pytest

from robustrain.cli import main
from robustrain.config import load_config
from robustrain.train import fit
from robustrain.train.trackers.records import epoch_points, final_metrics
from robustrain.train.trackers.tensorboard import TensorBoardTracker

from conftest import TINY

# a tiny run: 2 epochs x 8 steps (synthetic data, batch 64), per-step records every 2 steps
FAST = TINY + ["model.width=4", "guard.enabled=false", "eval.final_attacks=[natural,pgd20]"]
EPOCH_STEPS = [8, 16]
LOG_STEPS = [2, 4, 6, 8, 10, 12, 14, 16]


class _Stop(Exception):
    pass


def _stop_after_first_epoch(epoch, record):
    if epoch == 1:
        raise _Stop


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """A run with all three trackers (and artifacts), interrupted after epoch 1, resumed, then
    resumed once more when finished (the final table is computed again, nothing is logged twice):
    (run folder, trackers.json after epoch 1, trackers.json at the end, summary)."""
    out = tmp_path_factory.mktemp("trackers")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_PROJECT", "WANDB_ENTITY"):
            mp.delenv(var, raising=False)
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_DIR", str(out / "wandb-dir"))
        mp.setenv("WANDB_SILENT", "true")
        cfg = load_config(None, FAST + [f"out_dir={out / 'runs'}", "train.loggers=[mlflow,wandb]",
                                        "train.tensorboard=true", "train.log_artifacts=true"])
        with pytest.raises(_Stop):
            fit(cfg, progress=False, verbose=False, on_epoch_end=_stop_after_first_epoch)
        run_dir = out / "runs" / cfg.run_name
        first = json.loads((run_dir / "trackers.json").read_text())
        # W&B names an offline run's folder by the second it started (offline-run-YYYYmmdd_HHMMSS-ID):
        # two processes of one run id started within the same second share a folder and the later
        # .wandb file replaces the earlier one, so the processes here start a second apart, as real
        # resumes do
        time.sleep(1.1)
        summary = fit(cfg, resume=True, progress=False, verbose=False)
        time.sleep(1.1)
        fit(cfg, resume=True, progress=False, verbose=False)
    return run_dir, first, json.loads((run_dir / "trackers.json").read_text()), summary


def test_trackers_json_keeps_one_run_per_backend(resumed_run):
    run_dir, first, last, _ = resumed_run
    assert list(last) == ["mlflow", "wandb", "tensorboard"]
    for name in last:
        assert first[name]["run"]["run_id"] == last[name]["run"]["run_id"], name  # the same tracker run
        assert (first[name]["epoch"], first[name]["step"]) == (1, 8) and "final_step" not in first[name]
        assert (last[name]["epoch"], last[name]["step"], last[name]["final_step"]) == (2, 16, 16)


def test_mlflow_params_tags_every_step_once_and_artifacts(resumed_run):
    from mlflow.tracking import MlflowClient

    run_dir, _, state, summary = resumed_run
    run = state["mlflow"]["run"]
    assert run["tracking_uri"] == f"sqlite:///{(run_dir.parent / 'mlruns' / 'mlflow.db').as_posix()}"  # the default
    client = MlflowClient(tracking_uri=run["tracking_uri"])
    got = client.get_run(run["run_id"])
    assert got.info.status == "FINISHED"
    assert client.get_experiment(got.info.experiment_id).name == "robustrain"
    params = got.data.params
    assert params["train.epochs"] == "2" and params["method.name"] == "pgd_at" and params["model.width"] == "4"
    assert params["train.loggers"] == "mlflow,wandb"
    tags = got.data.tags
    assert {k: tags[k] for k in ("method", "model", "dataset", "seed", "scale")} == {
        "method": "pgd_at", "model": "small_cnn", "dataset": "synthetic", "seed": "0", "scale": "small"}
    assert tags["selection"].startswith("best pgd20 on ")
    history = lambda key: [m.step for m in client.get_metric_history(run["run_id"], key)]  # noqa: E731
    assert history("train/loss") == EPOCH_STEPS  # one point per epoch, across the resume
    assert history("eval/pgd20") == EPOCH_STEPS
    assert history("epoch_time_s") == EPOCH_STEPS and history("wall_time_s") == EPOCH_STEPS
    assert history("steps/loss") == LOG_STEPS  # the per-step records, none twice
    assert history("final/best/natural") == [16]  # once, though the finished run was resumed again
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m.value for m in client.get_metric_history(run["run_id"], "train/loss")] == pytest.approx(
        [r["train"]["loss"] for r in metrics])
    final = got.data.metrics
    assert final["final/best/natural"] == pytest.approx(summary["final"]["natural"])
    assert final["final/last/pgd20"] == pytest.approx(summary["final_last"]["pgd20"])
    assert final["selection/n_evaluated"] == summary["selection_split"]["n_evaluated"]
    assert final["final/train_time_s"] == pytest.approx(summary["train_time_s"])
    assert {"best.pt", "summary.json", "config.yaml", "metrics.jsonl"} <= {
        a.path for a in client.list_artifacts(run["run_id"])}


def _wandb_records(path: Path) -> list:
    """The protobuf records of a ``.wandb`` file: W&B's 7-byte header (``:W&B``, magic, version),
    then the LevelDB log format (32 KiB blocks of chunks: crc32 4, length 2, type 1 bytes)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    records, pos, block, pending = [], 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # the block's tail is padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:  # zero padding up to the block's end
            pos += block - pos % block if pos % block else 0
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # FULL, LAST
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def test_wandb_offline_run_resumed_with_same_id(resumed_run):
    run_dir, _, state, summary = resumed_run
    run_id = state["wandb"]["run"]["run_id"]
    files = sorted((run_dir.parent.parent / "wandb-dir" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 3  # the three processes, one W&B run id (`wandb sync` joins them)
    steps: dict[str, list[int]] = {}
    summaries: dict[str, float] = {}
    runs = []
    for f in files:
        for record in _wandb_records(f):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                runs.append(record.run)
            elif kind == "history":
                items = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item}
                for key in items:
                    steps.setdefault(key, []).append(items["_step"])
            elif kind == "summary":
                summaries.update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                  for item in record.summary.update})
    assert [r.run_id for r in runs] == [run_id] * 3 and runs[0].project == "robustrain"
    assert "method:pgd_at" in runs[0].tags and "dataset:synthetic" in runs[0].tags
    config = {item.key: json.loads(item.value_json) for item in runs[0].config.update}
    assert config["train.epochs"] == 2 and config["method.name"] == "pgd_at"
    assert steps["train/loss"] == EPOCH_STEPS
    assert steps["steps/loss"] == LOG_STEPS
    assert summaries["final/best/natural"] == pytest.approx(summary["final"]["natural"])


def test_tensorboard_event_files_one_curve(resumed_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, *_ = resumed_run
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == EPOCH_STEPS
    assert [e.step for e in acc.Scalars("steps/loss")] == LOG_STEPS
    assert [e.step for e in acc.Scalars("final/best/natural")] == [16]


# ------------------------------------------------------------------ failures
@pytest.mark.parametrize("name,module", [("wandb", "wandb"), ("mlflow", "mlflow"), ("mlflow", "sqlalchemy"),
                                         ("tensorboard", "torch.utils.tensorboard")])
def test_missing_package_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, name, module):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store: SQLite, needs SQLAlchemy
    real_import = importlib.import_module

    def without(target, *args, **kwargs):
        if target == module or target.startswith(module + "."):
            raise ImportError(f"No module named {module!r}")
        return real_import(target, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", without)
    code = main(["train", f"out_dir={tmp_path / 'runs'}", f"train.loggers=[{name}]", "data.name=synthetic"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert f"pip install -e .[{name}]" in err and f"{module.split('.')[-1]} is not installed" in err
    assert not (tmp_path / "runs").exists()  # nothing was written


def test_unknown_tracker_is_one_line(tmp_path, capsys):
    code = main(["train", f"out_dir={tmp_path / 'runs'}", "train.loggers=[neptune]", "data.name=synthetic"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "unknown tracker 'neptune'" in err and "mlflow" in err
    assert not (tmp_path / "runs").exists()


def test_failing_backends_are_one_warning_each_and_training_goes_on(tmp_path, monkeypatch):
    # MLflow's server is unreachable from the start (a closed port, no retries); TensorBoard's
    # disk fills up in the middle of the run; W&B (offline) keeps logging throughout
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    calls = []

    def disk_full(self, metrics, step):
        calls.append(step)
        if len(calls) > 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(TensorBoardTracker, "log_metrics", disk_full)
    cfg = load_config(None, FAST + [f"out_dir={tmp_path / 'runs'}", "train.epochs=1",
                                    "train.loggers=[mlflow,tensorboard,wandb]"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = fit(cfg, progress=False, verbose=False)
    tracker_warnings = [str(w.message) for w in caught if str(w.message).startswith("tracker ")]
    assert len(tracker_warnings) == 2, tracker_warnings
    assert tracker_warnings[0].startswith("tracker mlflow failed") and "training goes on" in tracker_warnings[0]
    assert tracker_warnings[1].startswith("tracker tensorboard failed (OSError")
    assert "No space left" in tracker_warnings[1]
    assert len(calls) == 3  # off after its failure
    run_dir = tmp_path / "runs" / cfg.run_name
    assert summary["final"] and (run_dir / "summary.json").is_file() and (run_dir / "best.pt").is_file()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    # what each backend got, for a --resume to catch up on: tensorboard is behind, mlflow never started
    state = json.loads((run_dir / "trackers.json").read_text())
    assert "mlflow" not in state and state["tensorboard"]["epoch"] == 0 and state["wandb"]["epoch"] == 1


# ------------------------------------------------------------------ what is logged (hand-computed)
def test_epoch_points_merge_steps_and_skip_non_numbers():
    record = {"epoch": 2, "step": 8, "lr": 0.05, "train": {"loss": 1.5, "acc": 0.25},
              "eval": {"natural": 0.5, "pgd20": float("nan")}, "catastrophic_overfitting": True,
              "steps": [{"step": 6, "lr": 0.05, "loss": 1.75}, {"step": 8, "lr": 0.05, "loss": 1.25}],
              "resumed_with": ["optim.lr=0.05"], "epoch_time_s": 2.0}
    assert epoch_points(record) == [
        (6, {"steps/lr": 0.05, "steps/loss": 1.75}),
        (8, {"steps/lr": 0.05, "steps/loss": 1.25, "epoch": 2.0, "lr": 0.05, "train/loss": 1.5,
             "train/acc": 0.25, "eval/natural": 0.5, "catastrophic_overfitting": 1.0, "epoch_time_s": 2.0}),
    ]


def test_final_metrics_best_and_last():
    summary = {"final": {"natural": 0.75, "pgd20": 0.5}, "final_last": {"natural": 0.7, "pgd20": 0.45},
               "best_epoch": 1, "last_epoch": 2, "n_test": 64, "train_time_s": 3.5, "stopped_early": None,
               "selection_split": {"n_evaluated": 64, "n_held_out": 100, "seed": 13, "best_epoch": 1},
               "selection": "best pgd20 on ...", "config": {"seed": 0}}
    assert final_metrics(summary) == {
        "final/best/natural": 0.75, "final/best/pgd20": 0.5, "final/last/natural": 0.7, "final/last/pgd20": 0.45,
        "selection/n_evaluated": 64.0, "selection/n_held_out": 100.0, "selection/seed": 13.0,
        "selection/best_epoch": 1.0, "final/best_epoch": 1.0, "final/last_epoch": 2.0, "final/n_test": 64.0,
        "final/train_time_s": 3.5}


def test_tracker_keys_stay_out_of_the_fingerprint():
    from robustrain.reproduce.plan import config_fingerprint

    base = load_config(None, [])
    assert config_fingerprint(base) == config_fingerprint(
        load_config(None, ["train.loggers=[]", "train.log_artifacts=false", "train.tracker_project="]))

    # on, too: logging and checkpoint frequency never change what is trained, so reproduce finds
    # a run trained with a tracker (or mid-epoch checkpoints) again
    assert config_fingerprint(base) == config_fingerprint(load_config(None, [
        "train.loggers=[tensorboard,mlflow]", "train.log_artifacts=true", "train.tracker_project=p",
        "train.checkpoint_every=100", "data.workers=2"]))
    assert config_fingerprint(base) != config_fingerprint(load_config(None, ["train.sample_state=bf16"]))
