"""The experiment loggers ``--report-to`` names: checked before training (a logger that cannot
start is one line, exit 2, not a traceback from inside the Trainer), and, for MLflow, given what
transformers' callback does not know: thawkit's own facts as parameters, the final metrics, and
the run folder as artifacts, in the same (named) MLflow run.

MLflow 3 keeps its runs in ``sqlite:///mlflow.db`` in the working folder unless
``MLFLOW_TRACKING_URI`` says otherwise; its file store (``./mlruns``) refuses to start unless
``MLFLOW_ALLOW_FILE_STORE=true``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thawkit.errors import ConfigError

_PACKAGES = {"tensorboard": "tensorboardX", "mlflow": "'thawkit[mlflow]'", "wandb": "wandb", "comet_ml": "comet-ml",
             "clearml": "clearml", "dvclive": "dvclive", "neptune": "neptune", "codecarbon": "codecarbon"}


def check_loggers(report_to: list[str]) -> None:
    """Every --report-to logger installed and able to start."""
    from transformers.integrations.integration_utils import get_available_reporting_integrations

    available = set(get_available_reporting_integrations())
    for name in report_to:
        if name not in ("none", "all") and name not in available:
            raise ConfigError(f"--report-to {name}: the logger is not installed; fix: pip install {_PACKAGES.get(name, name)} "
                              "or drop the flag")
    if "mlflow" in report_to:
        _check_mlflow_store()


def _check_mlflow_store() -> None:
    import os

    import mlflow
    from mlflow.exceptions import MlflowException

    uri = os.environ.get("MLFLOW_TRACKING_URI") or None  # what transformers' callback will use (None: MLflow's default)
    try:
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except (MlflowException, ValueError, OSError) as exc:
        first = " ".join(str(exc).split()).split(". ")[0][:300]
        raise ConfigError(f"--report-to mlflow: the tracking store {uri or mlflow.get_tracking_uri()!r} cannot be used ({first}); fix: "
                          "set MLFLOW_TRACKING_URI to a database (e.g. sqlite:///mlflow.db) or a tracking server") from None


def _flat(prefix: str, value: Any, into: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(f"{prefix}.{key}", inner, into)
    elif value is not None:
        into[prefix] = str(value)[:500]


def report_run(report_to: list[str], folder: Path, info: dict[str, Any], metrics: dict[str, Any]) -> None:
    """After the run is written: thawkit's facts, final metrics and folder into the MLflow run the
    Trainer's callback opened and closed (the last active one in this process)."""
    if "mlflow" not in report_to:
        return
    import mlflow

    finished = mlflow.last_active_run()
    if finished is None:
        return
    params: dict[str, str] = {}
    for name in ("task", "strategy", "base_model", "model_type", "trainable_params", "total_params", "precision", "head_fit",
                 "num_train_examples", "num_validation_examples", "metric", "defaults_source", "train_seconds"):
        _flat(f"thawkit.{name}", info.get(name), params)
    _flat("thawkit.strategy_options", info.get("strategy_options"), params)
    _flat("thawkit.cache", {k: v for k, v in (info.get("cache") or {}).items() if not isinstance(v, (list, dict))}, params)
    final = {f"final_{split}_{name}": float(value) for split in ("validation", "test") for name, value in (metrics.get(split) or {}).items()
             if isinstance(value, (int, float)) and not isinstance(value, bool)}
    with mlflow.start_run(run_id=finished.info.run_id):
        mlflow.log_params(params)
        mlflow.log_metrics(final)
        mlflow.log_artifacts(str(folder), artifact_path="run")


__all__ = ["check_loggers", "report_run"]
