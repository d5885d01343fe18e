"""The typed configs: the single source for CLI flags, YAML keys, ``--help``, error messages, the
options table in docs/config.md and the resolved config saved with every run.

A field's CLI flag is ``--field-name`` (``--no-field-name`` for booleans); ``json_schema_extra``
may add ``aliases`` (other flags that mean the same) or ``cli: False`` (not a flag: set through
other flags, e.g. ``strategy_options`` through each strategy's own flags).
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from thawkit.errors import ConfigError, join_problems
from thawkit.models.backbone import DEFAULT_MODEL
from thawkit.strategies import get_strategy_class
from thawkit.tasks import available_tasks


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_assignment=False)

    task: str = Field(default="classification", description="what to train: classification, ner, qa, similarity or generation")
    # Data
    data: Path = Field(description="training file (.csv, .tsv, .jsonl, .parquet, CoNLL, SQuAD JSON), save_to_disk folder, or "
                       "a Hub dataset hf:NAME[:SPLIT] (hf:NAME:CONFIG:SPLIT; offline: from the local datasets cache)")
    validation: Path | None = Field(default=None, description="validation file or hf:NAME:SPLIT (default: a seeded split of --data)")
    test: Path | None = Field(default=None, description="test file or hf:NAME:SPLIT, evaluated once at the end")
    text_col: str | None = Field(default=None, description="text column (default: text, sentence, ...); generation: the prompt column",
                                 json_schema_extra={"aliases": ["--prompt-col"]})
    text_pair_col: str | None = Field(default=None, description="second text column, for sentence pairs")
    label_col: str | None = Field(default=None, description="label (or score) column (default: label, labels, ...); generation: the "
                                  "completion column", json_schema_extra={"aliases": ["--completion-col"]})
    multi_label: bool | None = Field(default=None, description="multi-label classification (default: detected from list cells)")
    label_sep: str = Field(default=",", min_length=1, description="separator of labels in a multi-label cell")
    label_names: list[str] | None = Field(default=None, description="classification: names for the label values in their "
                                          "sorted order (0, 1, ... or as they sort), comma-separated: e.g. negative,positive")
    slice_cols: list[str] = Field(default_factory=list, description="classification: columns whose values slice the "
                                  "validation and test metrics (per-slice accuracy and macro-F1, the worst slice and its gap)", json_schema_extra={"aliases": ["--slice-col"]})
    long_text: Literal["truncate", "window"] = Field(default="truncate", description="classification: a text longer than "
                                                     "--max-length is truncated, or split into overlapping windows that each "
                                                     "train with its text's label, the text's score pooling its windows'")
    window_overlap: int | None = Field(default=None, ge=0, le=16384, description="--long-text window: tokens shared by "
                                       "consecutive windows (default: a quarter of --max-length)")
    window_pooling: Literal["mean", "max"] = Field(default="mean", description="--long-text window: a text's logits from its "
                                                   "windows' (mean, or the largest per class)")
    calibrate: bool | None = Field(default=None, description="classification: fit a temperature on the validation split and "
                                   "divide the saved output layer by it (calibrated scores, same argmax; default: on)")
    delimiter: str | None = Field(default=None, description="column separator when the extension's is wrong: ';', '|', 'tab'")
    quotechar: str | None = Field(default=None, description="quote character of CSV/TSV cells (TSVs are read unquoted unless given)")
    val_fraction: float = Field(default=0.1, gt=0, lt=1, description="validation share when splitting --data")

    # Model and strategy
    model: str = Field(default=DEFAULT_MODEL, description="hub id, local folder or alias (minilm-l6)")
    tokenizer: str | None = Field(default=None, description="tokenizer (default: the model's own)")
    strategy: str = Field(default="full", description="transfer-learning strategy (thawkit strategies), or auto (thawkit advise)")
    strategy_options: dict[str, Any] = Field(
        default_factory=dict, description="the strategy's own options (CLI: each strategy's flags)", json_schema_extra={"cli": False}
    )

    # Optimisation (defaults follow common practice for BERT-style fine-tuning)
    epochs: float = Field(default=3, gt=0, le=1000, description="training epochs (not given: 3, more for small data so a run has 150+ optimizer steps, at most 10)")
    lr: float | None = Field(default=None, gt=0, lt=1, description="base learning rate (default: per strategy)")
    head_lr_mult: float | None = Field(
        default=None, gt=0, le=1000, description="the task head's LR = base LR x this (default: the strategy's, 1; see docs/defaults.md)"
    )
    batch_size: int = Field(default=16, gt=0, le=65536, description="per-device training batch size")
    eval_batch_size: int = Field(default=64, gt=0, le=65536, description="per-device evaluation batch size")
    gradient_accumulation_steps: int = Field(default=1, gt=0, le=4096, description="batches per optimizer step")
    max_length: int | None = Field(default=None, ge=8, le=32768, description="max tokens per example (default: the task's, 128; qa 384)")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1, description="share of steps with LR warmup")
    weight_decay: float = Field(default=0.01, ge=0, lt=1, description="AdamW decay (not on biases/norms)")
    early_stopping_patience: int = Field(
        default=2, ge=0, description="evaluations without gain before stopping (0: off)", json_schema_extra={"aliases": ["--patience"]}
    )
    metric: str | None = Field(default=None, description="validation metric that selects the best epoch (default: the task's)")
    cache: bool = Field(default=True, description="cache frozen-layer outputs (frozen, partial, gradual)")
    cache_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="cached states: float32 (exact), bfloat16, float16; auto = bf16 where the hardware is fast at it"
    )
    cache_dir: Path | None = Field(default=None, description="feature cache folder (default ~/.cache/thawkit)")
    cache_ram_budget_mb: float = Field(default=4096, gt=0, description="above this, cache files are memory-mapped")
    group_by_length: bool = Field(default=True, description="batch examples of similar length (less padding)")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="training arithmetic: bf16 autocast with fp32 master weights, or fp32; auto = bf16 where the hardware is fast at it"
    )
    class_weights: Literal["auto", "balanced", "none"] = Field(
        default="auto", description="weight the loss by inverse class frequency: auto (when classes are skewed 3:1 or more), balanced (always), none"
    )
    strict: bool = Field(default=False, description="turn guard warnings into errors")
    measure_forgetting: bool = Field(default=True, description="measure representation drift after training",
                                     json_schema_extra={"aliases": ["--forgetting"]})
    save_checkpoints: bool = Field(default=False, description="keep a Trainer checkpoint per epoch in checkpoints/")
    checkpoint_every: str = Field(default="10m", description="resumable checkpoints: 'epoch', a step count (500) or a time (10m, 1h)")
    keep_checkpoints: int = Field(default=1, ge=1, le=100, description="resumable checkpoints kept (the newest)")
    dapt_text: Path | None = Field(default=None, description="unlabeled domain text: continued masked-LM pretraining first "
                                   "(thawkit dapt), then fine-tuning of the adapted encoder (written to OUT-dapt)")
    distill_alpha: float = Field(default=0.5, ge=0, le=1, description="distill: weight of the teacher's soft targets (1 - alpha: the labels)")
    distill_temperature: float = Field(default=2.0, gt=0, le=20, description="distill: softmax temperature of the soft targets")
    distill_hidden_weight: float = Field(default=0.0, ge=0, description="distill: weight of matching each student layer's hidden "
                                         "states to its teacher layer (MSE; 0: off)")
    resume: Path | None = Field(default=None, description="continue an interrupted run from its last checkpoint: its --out folder "
                                "(or a checkpoint folder); the rest of its config is the one it started with")
    progress: Literal["bar", "lines", "off"] = Field(default="bar", description="progress display: bar, lines (one per evaluation, a step line at least every 30 s between) or off")
    select_best: bool = Field(default=True, description="restore the best validation checkpoint at the end")
    seed: int = Field(default=42, ge=0, description="random seed (init, shuffling, split)")
    split_seed: int | None = Field(default=None, ge=0, description="seed of the validation split (default: --seed)")
    max_new_tokens: int | None = Field(default=None, ge=1, le=4096, description="generation: tokens written per prompt when "
                                       "scoring and predicting (default: the longest training completion + 25%)")
    generation_samples: int = Field(default=64, ge=0, le=100_000, description="generation: validation prompts answered and "
                                    "scored (BLEU, ROUGE-L, exact match) after training; a --test file's are all scored")
    score_scale: float | None = Field(default=None, gt=0, le=1_000_000, description="similarity: the top of the score "
                                      "scale, scores from 0 to it (default: the smallest of 1, 5, 10, 100 that holds them)")
    time_limit_seconds: float | None = Field(default=None, gt=0, description="stop training after this many seconds")

    # Scale-out on Ray (needs the [ray] extra; docs/scaling.md)
    ray_workers: int | None = Field(default=None, ge=1, le=1024, description="train on N Ray Train workers (DDP through "
                                    "TorchTrainer; gloo on CPU, NCCL on GPU)")
    ray_address: str | None = Field(default=None, description="Ray cluster: auto (a running one) or ray://host:10001 "
                                    "(default: a local Ray on this machine)")
    ray_cpus: float = Field(default=1, gt=0, le=1024, description="CPUs per Ray job (compare) or worker (train); "
                            "also its torch threads")
    ray_gpus: float = Field(default=0, ge=0, le=64, description="GPUs per Ray job or worker")

    # Output
    out: Path | None = Field(default=None, description="run directory (default: runs/<task>-<strategy>-<time>)")
    overwrite: bool = Field(default=False, description="replace an existing run directory")
    report_to: list[str] = Field(default_factory=list, description="Trainer loggers, comma-separated: tensorboard, mlflow, ...")
    logging_steps: int | None = Field(default=None, ge=1, le=100_000, description="log the training loss every N optimizer steps "
                                      "(to the loggers and the run's history; default: about 10 points an epoch, ending on the epoch)")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in available_tasks():
            raise ValueError(f"unknown task {value!r}; choose one of: {', '.join(available_tasks())}")
        return value

    @field_validator("progress", mode="before")
    @classmethod
    def _progress_from_bool(cls, value: Any) -> Any:
        return {True: "bar", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("delimiter", "quotechar", mode="before")
    @classmethod
    def _one_character(cls, value: Any) -> Any:
        if value is None:
            return None
        value = {"tab": "\t", "\\t": "\t"}.get(str(value), str(value))
        if len(value) != 1:
            raise ValueError(f"{value!r} must be one character (or 'tab')")
        return value

    def table_format(self) -> Any:
        from thawkit.data.tables import TableFormat

        return TableFormat(self.delimiter, self.quotechar)

    @field_validator("checkpoint_every")
    @classmethod
    def _checkpoint_interval(cls, value: str) -> str:
        value = str(value).strip().lower()
        if value != "epoch" and not value.isdigit() and not re.fullmatch(r"(\d+(\.\d+)?[hms])+", value):
            raise ValueError(f"{value!r} is not 'epoch', a step count (500) or a time (10m, 1h)")
        if value.isdigit() and int(value) == 0:
            raise ValueError("a step count must be at least 1")
        return value

    def data_split_seed(self) -> int:
        """The seed of the validation split: --split-seed, else --seed (the one place this default lives;
        readers call it, since the advisor and export read data with configs that were never planned)."""
        return self.split_seed if self.split_seed is not None else self.seed

    def checkpoint_plan(self) -> tuple[str, int | None, float | None]:
        """(Trainer save strategy, save steps, seconds between timed checkpoints)."""
        every = self.checkpoint_every
        if every == "epoch" or self.save_checkpoints:
            return "epoch", None, None
        if every.isdigit():
            return "steps", int(every), None
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", every))
        return "no", None, seconds

    @model_validator(mode="after")
    def _check_strategy(self) -> "TrainConfig":
        if self.strategy == "auto":
            if self.strategy_options:
                raise ValueError("strategy options need a named strategy, not 'auto'")
            return self
        _check_strategy_options(self.strategy, self.strategy_options)
        return self

def _check_strategy_options(strategy: str, options: dict[str, Any]) -> None:
    strategy_cls = get_strategy_class(strategy)
    try:
        strategy_cls.Config(**options)
    except ValidationError as exc:
        flags = {name: f"{name} ({field.json_schema_extra['flag']})" for name, field in strategy_cls.Config.model_fields.items()
                 if isinstance(field.json_schema_extra, dict) and "flag" in field.json_schema_extra}
        raise ValueError(describe(exc, prefix=f"strategy {strategy!r} option ", names=flags)) from None


def flag_of(field_name: str) -> str:
    return f"--{field_name.replace('_', '-')}"


def describe(exc: ValidationError, prefix: str = "", names: dict[str, str] | None = None) -> str:
    """A pydantic error as one line that names the CLI flag (or option: ``names`` says how), the value
    and the problem."""
    problems = []
    for error in exc.errors():
        field_name = ".".join(str(part) for part in error["loc"])
        flag = flag_of(field_name) if not prefix and field_name else (names or {}).get(field_name, field_name)
        value = error.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{prefix}{flag}: {message}{shown}" if field_name else f"{prefix}{message}")
    return join_problems(problems)


def make_config(values: dict[str, Any], source: str = "arguments", model: type[BaseModel] = TrainConfig) -> Any:
    """Validate a config; every problem is reported at once as one ``ConfigError`` line."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise ConfigError(f"invalid {source}: {describe(exc)}") from None


def comma_list(value: str, flag: str) -> list[str]:
    """'a, b' -> ['a', 'b'] for a list option given as text (a flag, or a YAML string); '' and 'a,,b' are refused."""
    parts = [part.strip() for part in value.split(",")]
    if not any(parts) or (len(parts) > 1 and not all(parts)):
        raise ConfigError(f"{flag} {value!r}: {'names nothing' if not any(parts) else 'an empty name between commas'}; "
                          "fix: comma-separated names such as a,b, or leave it out for its default")
    return parts


def load_yaml_config(path: str | Path, schema: type[BaseModel] | None = None) -> dict[str, Any]:
    """The YAML file's options; with ``schema``, an unknown key is an error naming the file and the
    closest option."""
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
    values = {str(key).replace("-", "_"): value for key, value in values.items()}
    if schema is not None:
        import difflib

        for key in values:
            if key not in schema.model_fields:
                close = difflib.get_close_matches(key, list(schema.model_fields), n=1)
                hint = f"did you mean {close[0]!r}?" if close else "see docs/config.md for the options"
                raise ConfigError(f"{path}: unknown option {key!r}; fix: {hint}")
        from pydantic import TypeAdapter

        for key, value in values.items():  # each value's type, before anything merges with it
            annotation = schema.model_fields[key].annotation
            if isinstance(value, str) and list in (typing.get_origin(annotation), *map(typing.get_origin, typing.get_args(annotation))):
                values[key] = value = comma_list(value, f"{path}: {key}")
            try:
                TypeAdapter(annotation).validate_python(value)
            except ValidationError as exc:
                problem = exc.errors()[0]["msg"]
                raise ConfigError(f"{path}: {key}: {problem} (got {value!r}); fix: see docs/config.md for what {key} takes") from None
    return values


class CompareConfig(TrainConfig):
    """Every ``train`` option, plus what a comparison adds; strategy options are per strategy."""

    strategy: str = Field(default="full", description="(set per job by compare)", json_schema_extra={"cli": False})
    strategies: list[str] = Field(default_factory=lambda: ["all"], description="strategies to compare, comma-separated, or all")
    models: list[str] | None = Field(default=None, description="models to compare (hub ids, folders or aliases, comma-separated): "
                                     "every model x strategy x seed trains on the same split (default: the one --model)")
    strategy_options: dict[str, dict[str, Any]] = Field(  # type: ignore[assignment]
        default_factory=dict, description="per strategy: its own options (CLI: each strategy's flags)", json_schema_extra={"cli": False}
    )
    seeds: int = Field(default=1, ge=1, le=20, description="seeds per strategy (base seed, +1, +2, ...)")
    budget: str | None = Field(default=None, description="total time budget shared by the runs, e.g. 20m")
    successive_halving: bool = Field(default=False, description="train all briefly, keep the better half, double the epochs, ...")
    workers: int = Field(default=1, ge=1, le=64, description="training processes side by side")
    ray: bool | None = Field(default=None, description="run every strategy x seed job as a Ray task (with --successive-halving: "
                             "a Ray Tune search with the ASHA scheduler); needs the [ray] extra (default: on when --ray-address "
                             "is given)")
    advise: bool = Field(default=True, description="put the advisor's recommendation next to the measured winner")
    prompt_shots: int | None = Field(default=None, ge=0, le=64,
                                     description="add the no-training prompting baseline as a row (thawkit prompt: --prompt-model "
                                     "scores each label name; this many demonstrations per class, 0: zero-shot); classification")
    prompt_model: str | None = Field(default=None, description="the decoder the prompting baseline prompts (default: smollm2-135m)")
    out: Path | None = Field(default=None, description="comparison directory (default: runs/compare-<time>)")

    @model_validator(mode="after")
    def _check_strategy(self) -> "CompareConfig":  # type: ignore[override]
        for name, options in self.strategy_options.items():
            _check_strategy_options(name, options)
        if self.prompt_model is not None and self.prompt_shots is None:
            raise ValueError(f"--prompt-model {self.prompt_model} without --prompt-shots adds nothing; fix: pass --prompt-shots K "
                             "(0 for zero-shot) to add the prompting baseline")
        if self.models is not None:
            if "model" in self.model_fields_set:
                raise ValueError("--model and --models both name the model; fix: pass the models to compare with --models only")
            if not self.models or len(set(self.models)) != len(self.models):
                raise ValueError(f"--models {','.join(self.models)}: each model once; fix: list distinct models, comma-separated")
        return self

    def model_list(self) -> list[str]:
        """The models compared: --models, else the one --model (the one place this default lives)."""
        return list(self.models) if self.models else [self.model]

    def comparison_dir(self) -> Path:
        """--out, else runs/compare-<time> (the one place this default lives)."""
        import time

        return Path(self.out) if self.out is not None else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"

    def on_ray(self) -> bool:
        """--ray, or an address that says where to run (the one place this default lives)."""
        return self.ray if self.ray is not None else self.ray_address is not None

    def train_values(self) -> dict[str, Any]:
        """The ``TrainConfig`` options given to the comparison, for each of its jobs (the rest each job's plan resolves)."""
        own = set(CompareConfig.model_fields) - set(TrainConfig.model_fields)
        return {k: v for k, v in self.model_dump(exclude_unset=True).items()
                if k not in own and k not in ("strategy", "strategy_options", "resume", "model")}
