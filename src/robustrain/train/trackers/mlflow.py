"""MLflow through ``MlflowClient`` (``pip install -e .[mlflow]``: mlflow-skinny with SQLAlchemy and
Alembic for the local store).

Where: ``MLFLOW_TRACKING_URI`` when set (a server, ``sqlite:///...``, ``databricks`` ...), else a
local SQLite store ``OUT_DIR/mlruns/mlflow.db`` with artifacts in ``OUT_DIR/mlruns/artifacts``
(MLflow 3 no longer accepts a plain ``./mlruns`` folder store by default). The experiment is
``train.tracker_project``, else ``MLFLOW_EXPERIMENT_NAME``, else ``robustrain``. The config goes in
as parameters (dotted keys), the tags as tags, every metric at its global step. ``--resume``
reopens the stored run id in the stored store (parameters already logged are kept; a value that
``--resume`` changed, such as ``optim.lr``, is added as tag ``resumed.<key>``).

Example (then ``mlflow ui --backend-store-uri sqlite:///runs/mlruns/mlflow.db``):
    >>> default_tracking_uri(Path("/tmp/runs"))
    'sqlite:////tmp/runs/mlruns/mlflow.db'
    >>> metric_key("eval/pgd20@8:255")
    'eval/pgd20_8_255'
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Mapping

from robustrain.train.trackers.base import Tracker, TrackerRun, register_tracker

__all__ = ["MLflowTracker", "default_tracking_uri", "metric_key"]

#: tracking-URI schemes of MLflow's SQLAlchemy store
_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
#: MLflow's limits per ``log_batch`` request (metrics, params, tags) and per parameter value
_BATCH_METRICS, _BATCH_PARAMS, _MAX_PARAM = 1000, 100, 6000


def default_tracking_uri(out_dir: Path) -> str:
    """The local store used when ``MLFLOW_TRACKING_URI`` is not set: ``OUT_DIR/mlruns/mlflow.db``."""
    return f"sqlite:///{(Path(out_dir).absolute() / 'mlruns' / 'mlflow.db').as_posix()}"


def metric_key(name: str) -> str:
    """``name`` with the characters MLflow refuses in a key replaced by ``_``."""
    return re.sub(r"[^\w\-. /]", "_", name)


@register_tracker("mlflow", help="MLflow run (MLFLOW_TRACKING_URI, default sqlite OUT_DIR/mlruns/mlflow.db; experiment "
                                 "MLFLOW_EXPERIMENT_NAME or robustrain)")
class MLflowTracker(Tracker):
    """One MLflow run per training run, continued by ``--resume``."""

    name = "mlflow"
    module, extra, package = "mlflow", "mlflow", "mlflow-skinny sqlalchemy alembic"

    @classmethod
    def required_modules(cls) -> tuple[str, ...]:
        """``mlflow``, and for a database store (the local default, ``sqlite:``, ``postgresql:``
        ...) SQLAlchemy and Alembic, which mlflow-skinny leaves out."""
        scheme = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:").split(":", 1)[0].split("+", 1)[0]
        return ("mlflow",) + (("sqlalchemy", "alembic") if scheme in _DATABASE_SCHEMES else ())

    def __init__(self) -> None:
        self._client: Any = None
        self._run_id = ""

    def start(self, run: TrackerRun) -> dict[str, Any]:
        from mlflow.entities import Param, RunTag  # optional package (checked before the run)
        from mlflow.tracking import MlflowClient

        stored = dict(run.stored or {})
        if stored:
            uri = stored["tracking_uri"]
            self._client = MlflowClient(tracking_uri=uri)
            self._run_id = stored["run_id"]
            info = self._client.get_run(self._run_id)  # raises when the run is gone: one warning, off
            self._client.update_run(self._run_id, status="RUNNING")
            logged = info.data.params
            params = [Param(k, v) for k, v in _params(run.params).items() if k not in logged]
            tags = [RunTag(f"resumed.{k}", v) for k, v in _params(run.params).items() if k in logged and logged[k] != v]
            experiment_id = info.info.experiment_id
        else:
            local = not os.environ.get("MLFLOW_TRACKING_URI")
            uri = default_tracking_uri(run.out_dir) if local else os.environ["MLFLOW_TRACKING_URI"]
            if local:
                (Path(run.out_dir) / "mlruns").mkdir(parents=True, exist_ok=True)
            self._client = MlflowClient(tracking_uri=uri)
            name = run.project or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "robustrain"
            experiment_id = self._experiment(name, (Path(run.out_dir) / "mlruns" / "artifacts") if local else None)
            created = self._client.create_run(experiment_id, run_name=run.name, tags=dict(run.tags))
            self._run_id = created.info.run_id
            params, tags = [Param(k, v) for k, v in _params(run.params).items()], []
        for i in range(0, max(len(params), len(tags)), _BATCH_PARAMS):
            self._client.log_batch(self._run_id, params=params[i:i + _BATCH_PARAMS], tags=tags[i:i + _BATCH_PARAMS])
        return {"run_id": self._run_id, "tracking_uri": uri, "experiment_id": experiment_id}

    def _experiment(self, name: str, artifacts: Path | None) -> str:
        found = self._client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self._client.create_experiment(name, artifact_location=artifacts.absolute().as_uri()
                                                  if artifacts is not None else None)
        except Exception:  # created meanwhile by another run of the same store
            found = self._client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(metric_key(k), float(v), stamp, step) for k, v in metrics.items()]
        for i in range(0, len(batch), _BATCH_METRICS):
            self._client.log_batch(self._run_id, metrics=batch[i:i + _BATCH_METRICS])

    def log_artifact(self, path: Path) -> None:
        self._client.log_artifact(self._run_id, str(path))

    def finish(self, *, failed: bool = False) -> None:
        if self._run_id:
            self._client.set_terminated(self._run_id, status="FAILED" if failed else "FINISHED")


def _params(params: Mapping[str, Any]) -> dict[str, str]:
    return {metric_key(k): str(v)[:_MAX_PARAM] for k, v in params.items()}
