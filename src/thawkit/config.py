"""The typed training config: the single source for CLI flags, YAML files and the saved run config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from thawkit.errors import ConfigError, join_problems
from thawkit.models.backbone import DEFAULT_MODEL
from thawkit.registry import get_strategy_class


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    task: Literal["classification", "ner", "qa", "similarity"] = Field(
        default="classification", description="classification, ner, qa or similarity"
    )
    # Data
    data: Path = Field(description="training file (.csv, .tsv, .jsonl, .parquet) or save_to_disk folder")
    validation: Path | None = Field(default=None, description="validation file (default: a split of --data)")
    test: Path | None = Field(default=None, description="optional test file, evaluated once at the end")
    text_col: str | None = Field(default=None, description="text column (default: text, sentence, ...)")
    text_pair_col: str | None = Field(default=None, description="second text column, for sentence pairs")
    label_col: str | None = Field(default=None, description="label column (default: label, labels, ...)")
    multi_label: bool | None = Field(default=None, description="multi-label (default: detected from list cells)")
    label_sep: str = Field(default=",", min_length=1, description="separator of labels in a multi-label cell")
    val_fraction: float = Field(default=0.1, gt=0, lt=1, description="validation share when splitting --data")

    # Model and strategy
    model: str = Field(default=DEFAULT_MODEL, description="hub id, local folder or alias (minilm-l6)")
    tokenizer: str | None = Field(default=None, description="tokenizer (default: the model's own)")
    strategy: str = Field(default="full", description="transfer-learning strategy, or 'auto' (thawkit advise)")
    strategy_options: dict[str, Any] = Field(default_factory=dict, description="the strategy's own options")

    # Optimisation (defaults follow common practice for BERT-style fine-tuning)
    epochs: float = Field(default=3, gt=0, le=1000, description="training epochs")
    lr: float | None = Field(default=None, gt=0, lt=1, description="base learning rate (default: per strategy)")
    batch_size: int = Field(default=16, gt=0, le=65536, description="per-device training batch size")
    eval_batch_size: int = Field(default=64, gt=0, description="per-device evaluation batch size")
    gradient_accumulation_steps: int = Field(default=1, gt=0)
    max_length: int = Field(default=128, ge=8, le=32768, description="max tokens per example")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1, description="share of steps with LR warmup")
    weight_decay: float = Field(default=0.01, ge=0, lt=1, description="AdamW decay (not on biases/norms)")
    early_stopping_patience: int = Field(default=2, ge=0, description="evaluations without gain (0: off)")
    metric: Literal["accuracy", "macro_f1", "weighted_f1", "f1", "loss"] = Field(
        default="macro_f1", description="validation metric for model selection (ner: f1, chosen automatically)"
    )
    cache: bool = Field(default=True, description="cache frozen-layer outputs (frozen, partial, gradual)")
    cache_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="cached states: float32 (exact), bfloat16 (pass in bf16 too), auto = bf16 where the hardware is fast at it",
    )
    cache_dir: Path | None = Field(default=None, description="feature cache folder (default ~/.cache/thawkit)")
    cache_ram_budget_mb: float = Field(default=4096, gt=0, description="above this, cache files are memory-mapped")
    group_by_length: bool = Field(default=True, description="batch examples of similar length (less padding)")
    class_weights: Literal["none", "auto"] = Field(default="none", description="auto: weight the loss by inverse class frequency")
    strict: bool = Field(default=False, description="turn guard warnings into errors")
    measure_forgetting: bool = Field(default=True, description="measure representation drift after training")
    save_checkpoints: bool = Field(default=False, description="keep a Trainer checkpoint per epoch in checkpoints/")
    progress: bool = Field(default=True, description="show a progress bar while training")
    select_best: bool = Field(default=True, description="restore the best validation checkpoint at the end")
    seed: int = Field(default=42, ge=0, description="random seed (init, shuffling, split)")
    split_seed: int | None = Field(default=None, ge=0, description="seed of the validation split (default: --seed)")
    time_limit_seconds: float | None = Field(default=None, gt=0, description="stop training after this long")

    # Output
    out: Path | None = Field(default=None, description="run directory (default: runs/<strategy>-<time>)")
    overwrite: bool = Field(default=False, description="replace an existing run directory")
    report_to: list[str] = Field(default_factory=list, description="Trainer loggers: tensorboard, mlflow, ...")

    @model_validator(mode="after")
    def _check_strategy(self) -> "TrainConfig":
        if self.strategy == "auto":
            if self.strategy_options:
                raise ValueError("strategy options need a named strategy, not 'auto'")
            return self
        strategy_cls = get_strategy_class(self.strategy)
        try:
            strategy_cls.Config(**self.strategy_options)
        except ValidationError as exc:
            raise ValueError(_describe(exc, prefix=f"strategy {self.strategy!r} option ")) from None
        return self

    def strategy_config(self) -> Any:
        return get_strategy_class(self.strategy).Config(**self.strategy_options)

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else get_strategy_class(self.strategy).default_lr


def _describe(exc: ValidationError, prefix: str = "") -> str:
    problems = []
    for error in exc.errors():
        field_name = ".".join(str(part) for part in error["loc"])
        flag = f"--{field_name.replace('_', '-')}" if not prefix and field_name else field_name
        value = error.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{prefix}{flag}: {message}{shown}" if field_name else f"{prefix}{message}")
    return join_problems(problems)


def make_config(values: dict[str, Any], source: str = "arguments") -> TrainConfig:
    """Validate a config; every problem is reported at once as one ``ConfigError`` line."""
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        raise ConfigError(f"invalid {source}: {_describe(exc)}") from None


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found; fix: check the --config path")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML ({first_line}); fix: repair the file") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the config must be a mapping of option: value; fix: see docs/config.md")
    return {key.replace("-", "_"): value for key, value in values.items()}
