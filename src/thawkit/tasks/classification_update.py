"""``thawkit update`` for classification: the run's label list grows by the new data's unseen
labels (appended, so every old class keeps its id and its output row), the new examples train with
a seeded sample of the run's own training examples replayed beside them, and the run's validation
examples are rebuilt exactly (same files, same seeded split) to measure what the update forgets.

The run's training sources are its own data file(s); an update records its sources (the old ones
and the new file), so a later update replays from everything seen so far.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from thawkit.data.hub_datasets import is_hub_reference
from thawkit.errors import ConfigError
from thawkit.tasks.roles import UpdateData

if TYPE_CHECKING:
    import pandas as pd

    from thawkit.config import TrainConfig
    from thawkit.tasks.base import RunBase


def source_spec(data: Any, validation: Any, val_fraction: float, split_seed: int) -> dict[str, Any]:
    """Where one training source's rows come from: its file, and its validation file or seeded split."""
    def absolute(path: Any) -> str | None:
        return None if path is None else str(path) if is_hub_reference(path) else str(Path(path).resolve())

    return {"data": absolute(data), "validation": absolute(validation), "val_fraction": val_fraction, "split_seed": split_seed}


def _read(spec: dict[str, Any], columns: dict[str, Any], rename: dict[str, str], what: str) -> Any:
    from thawkit.data.labelled_sources import read_labelled_source

    for key in ("data", "validation"):
        if spec.get(key) is not None and not is_hub_reference(spec[key]) and not Path(spec[key]).is_file():
            raise ConfigError(f"{spec[key]}: {what} is not readable here; fix: restore the file there, or pass --old-data FILE "
                              "(the run's training file) to replay from and rebuild its validation split")
    return read_labelled_source(spec["data"], spec.get("validation"), val_fraction=spec["val_fraction"], seed=spec["split_seed"],
                                rename=rename, **columns)


def update_data(task: Any, info: dict[str, Any], labels: dict[str, Any], new: "TrainConfig", replay: int | None, seed: int,
                old_data: str | None = None) -> UpdateData:
    import pandas as pd

    from thawkit.data.classification import sort_labels
    from thawkit.data.labelled_sources import encode_labels, read_labelled_table
    from thawkit.tasks.base import TaskData

    old_config, old_labels, multi_label = info["config"], list(labels["labels"]), bool(labels["multi_label"])
    rename = dict(zip(info.get("label_values") or [], old_labels))
    columns = {"text_col": old_config.get("text_col"), "text_pair_col": old_config.get("text_pair_col"),
               "label_col": old_config.get("label_col"), "multi_label": multi_label, "label_sep": old_config.get("label_sep", ","),
               "fmt": new.table_format(), "slice_cols": new.slice_cols}
    for name in ("text_col", "label_col"):  # the new file may name its columns differently
        if getattr(new, name) is not None:
            columns[name] = getattr(new, name)
    # A run's saved config has its split seed resolved by the planner.
    own = source_spec(old_data or old_config["data"], None if old_data else old_config.get("validation"), old_config["val_fraction"],
                      old_config["split_seed"])
    pool = [own] if old_data is not None else list((info.get("update") or {}).get("pool") or [own])
    old_sources = [_read(spec, columns, rename, "the run's training data") for spec in pool]
    new_spec = source_spec(new.data, new.validation, new.val_fraction, new.data_split_seed())
    fresh = _read(new_spec, columns, rename, "--data")
    old_names = set().union(*(source.label_names for source in old_sources))
    # New classes come from the new training rows; a validation or test label outside them is an error.
    added = sort_labels({name for names in fresh.train["label_names"] for name in names} - set(old_labels))
    all_labels = old_labels + added
    unknown = sorted(old_names - set(old_labels))
    if unknown:
        raise ConfigError(f"{pool[0]['data']}: labels {unknown} are not the run's ({', '.join(old_labels)}); fix: pass --old-data "
                          "with the file the run was trained on")

    def encoded(frame: "pd.DataFrame", path: str | None) -> "pd.DataFrame":
        return encode_labels(frame.reset_index(drop=True), all_labels, multi_label, path)

    old_train = pd.concat([encoded(s.train, spec["data"]) for s, spec in zip(old_sources, pool)], ignore_index=True)
    old_validation = pd.concat([encoded(s.validation, spec["validation"] or spec["data"]) for s, spec in zip(old_sources, pool)],
                               ignore_index=True)
    new_train, new_validation = encoded(fresh.train, new_spec["data"]), encoded(fresh.validation, new_spec["validation"] or new_spec["data"])
    # Default: every old example. Measured (docs/benchmarks.md, "Updating a run"): on ChemProt with 7 new
    # relations, replaying as many as the new examples (615) forgot 0.108 macro-F1 on the old examples
    # and reached 0.699 test accuracy, replaying all 3,554 forgot 0.062 and reached 0.745 (retraining
    # from scratch: 0.739); on SST-2 the two are the same run. --replay N trades that for time.
    count = len(old_train) if replay is None else min(replay, len(old_train))
    replayed = old_train.sample(n=count, random_state=seed) if count else old_train.iloc[:0]
    test = None
    if new.test is not None:
        test = encoded(read_labelled_table(new.test, rename=rename, **columns), str(new.test))
    train = pd.concat([new_train, replayed], ignore_index=True)
    data = TaskData(
        train, pd.concat([old_validation, new_validation], ignore_index=True), test, all_labels, multi_label,
        f"the run's validation examples ({len(old_validation)}) and the new data's ({len(new_validation)}: "
        f"{fresh.validation_source})",
        {"problem_type": "multi_label_classification" if multi_label else "single_label_classification",
         "text_col": columns["text_col"], "text_pair_col": columns["text_pair_col"], "label_col": columns["label_col"],
         **({"label_values": list(info["label_values"]) + added} if info.get("label_values") else {})},
    )
    facts = {"new_labels": added, "new_train_examples": len(new_train), "replayed_examples": count,
             "replay_pool": len(old_train), "old_validation_examples": len(old_validation),
             "new_validation_examples": len(new_validation), "sources": len(pool) + 1}
    return UpdateData(data, old_validation, new_validation, [*pool, new_spec], facts)


def old_model(run: "RunBase") -> Any:
    """The run's model with its calibration undone (its output layer times T): training continues
    from the logits it learned, not from their tempered copy."""
    from thawkit.tasks.classification_calibration import bake_temperature

    calibration = run.info.get("calibration") or {}
    model = run.model
    if calibration.get("applied"):
        bake_temperature(model, len(run.labels), 1.0 / float(calibration["temperature"]))
    return model


def scores(run: "RunBase", frame: "pd.DataFrame", labels: list[str]) -> dict[str, float]:
    """The run's metrics on ``frame`` over ``labels``; classes the run does not know get no score
    (never predicted)."""
    from sklearn.metrics import f1_score

    from thawkit.tasks.classification_metrics import predictions_from_logits, scalar_metrics

    pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
    logits = np.asarray(run.logits(frame["text"].tolist(), pairs))  # type: ignore[attr-defined]
    missing = len(labels) - logits.shape[1]
    if missing > 0:
        logits = np.concatenate([logits, np.full((len(logits), missing), -1e9, dtype=logits.dtype)], axis=1)
    gold = np.asarray(frame["labels"].tolist())
    multi_label = run.multi_label  # type: ignore[attr-defined]
    metrics = scalar_metrics(logits, gold, multi_label)
    # Macro and weighted F1 over the classes these examples hold: on the old validation examples a new
    # class is only ever a wrong prediction (it costs its old class's recall), not a zero F1 averaged in.
    present = sorted(set(np.flatnonzero(gold.sum(axis=0)).tolist()) if multi_label else set(gold.tolist()))
    predicted = predictions_from_logits(logits, multi_label)
    for name, average in (("macro_f1", "macro"), ("weighted_f1", "weighted")):
        metrics[name] = float(f1_score(gold.astype(int), predicted, labels=present, average=average, zero_division=0))
    return metrics


__all__ = ["old_model", "scores", "source_spec", "update_data"]
