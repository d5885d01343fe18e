"""``thawkit advise``: recommend a strategy from data size, measured domain similarity and budget."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from thawkit.advisor.profile import DataProfile, build_profile
from thawkit.advisor.rules import Situation, dapt_advice, decide
from thawkit.advisor.similarity import DomainSimilarity, measure_domain_similarity
from thawkit.models.backbone import load_mlm_if_trained
from thawkit.errors import ConfigError

__all__ = ["Advice", "advise", "parse_budget", "parse_memory"]


@dataclass
class Advice:
    strategy: str
    learning_rate: float
    epochs: int
    batch_size: int
    max_length: int
    expected_seconds: float
    expected_memory_gb: float
    rule: str
    reasons: list[str]
    warnings: list[str]
    suggestions: list[str]
    domain: DomainSimilarity
    profile: DataProfile
    alternatives: dict[str, dict[str, float]] = field(default_factory=dict)
    dapt: dict[str, Any] | None = None  # with --unlabeled: whether to run domain-adaptive pretraining first, and why

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["domain"] = self.domain.as_dict()
        result["profile"] = self.profile.as_dict()
        return result


def parse_budget(text: str | None) -> float | None:
    """'30m', '2h', '90s', '1h30m' -> seconds."""
    if text is None:
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text.strip().lower())
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", text.strip().lower()):
        raise ConfigError(f"--budget {text!r} is not a duration; fix: write e.g. 30m, 2h or 1h30m")
    seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"--budget {text!r} leaves no time to train; fix: a budget above zero, e.g. 30m")
    return seconds


def parse_memory(text: str | None) -> float | None:
    """'16GB', '512MB' -> GiB."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(gb|g|gib|mb|m|mib)\s*", text.lower())
    if not match:
        raise ConfigError(f"--memory {text!r} is not a size; fix: write e.g. 16GB or 512MB")
    value, unit = float(match.group(1)), match.group(2)
    return value if unit.startswith("g") else value / 1024


def _round_max_length(p99: float, model_limit: int) -> int:
    length = 32
    while length < p99 and length < 512:
        length *= 2
    return int(min(length, model_limit))


def _task_profile(task: str, data: str | Path, validation: str | Path | None, text_col: str | None,
                  text_pair_col: str | None, label_col: str | None, seed: int, model: str, tokenizer: Any, max_length: int | None,
                  limit: int) -> tuple[Any, list[str], DataProfile, int]:
    """The task, its training texts, the data profile and the max length to recommend, read by the task itself."""
    from thawkit.config import make_config
    from thawkit.tasks import get_task

    handler = get_task(task)
    given = {"validation": validation, "text_col": text_col, "text_pair_col": text_pair_col, "label_col": label_col}
    cfg = make_config({"task": task, "data": data, "seed": seed, "model": model,
                       **{k: v for k, v in given.items() if v is not None}})
    loaded = handler.load_data(cfg)
    inputs = handler.advice_input(loaded)
    labels, counts = list(loaded.labels or []), handler.class_counts(loaded)
    if max_length is not None:
        chosen = max_length
    elif not handler.length_from_data:  # the task's own length (QA windows long contexts instead of truncating)
        chosen = min(handler.default_max_length, limit)
    else:
        chosen = _round_max_length(build_profile(inputs, 0, 0, [], None, tokenizer, limit).token_length["p99"], limit)
    profile = build_profile(inputs, len(loaded.train), len(loaded.validation), labels, counts, tokenizer, chosen,
                            handler.truncation_fix)
    return handler, inputs.texts, profile, chosen


def _median_per_class(counts: dict[str, int]) -> float | None:
    """Median training examples per class (a rare class does not make a data set few-shot); None
    where the task has no classes."""
    import statistics

    present = [c for c in counts.values() if c > 0]
    return float(statistics.median(present)) if present else None


def advise(
    data: str | Path,
    model: str = "minilm-l6",
    text_col: str | None = None,
    text_pair_col: str | None = None,
    label_col: str | None = None,
    validation: str | Path | None = None,
    budget: str | None = None,
    memory: str | None = None,
    gpu: bool = False,
    max_length: int | None = None,
    seed: int = 42,
    unlabeled: str | Path | None = None,
    task: str | None = None,
) -> Advice:
    """The recommendation for ``data`` (a ``task``'s training file): strategy, LR, epochs, batch size,
    max length, expected time and memory on this machine, and the reasons."""
    import torch
    from transformers import AutoModel

    from thawkit.advisor.estimate import busy_machine_note, expected_memory_gb, expected_seconds, probe_throughput
    from thawkit.config import TrainConfig
    from thawkit.engine.core.arguments import epochs_with_enough_steps
    from thawkit.models.backbone import from_pretrained_checked, load_tokenizer, resolve_model_path
    from thawkit.strategies import get_strategy_class, strategies_in_display_order
    from thawkit.tasks.generation_text import not_a_decoder

    task = task or TrainConfig.model_fields["task"].default
    if gpu and not torch.cuda.is_available():
        raise ConfigError("--gpu given but no CUDA device is visible; fix: drop --gpu or run on a GPU machine")
    busy = busy_machine_note()  # before this process's own work adds to the load
    budget_seconds = parse_budget(budget)
    memory_gb = parse_memory(memory)
    tokenizer = load_tokenizer(model)
    encoder = from_pretrained_checked(AutoModel, model)
    limit = int(getattr(encoder.config, "max_position_embeddings", 512) or 512)
    handler, texts, profile, chosen_length = _task_profile(task, data, validation, text_col, text_pair_col, label_col, seed, model,
                                                           tokenizer, max_length, limit)
    domain = measure_domain_similarity(texts, tokenizer, encoder, load_mlm_if_trained(resolve_model_path(model)), seed=seed)
    num_params = sum(p.numel() for p in encoder.parameters())
    hidden = int(getattr(encoder.config, "hidden_size", None) or encoder.config.dim)
    layers = int(getattr(encoder.config, "num_hidden_layers", None) or encoder.config.n_layers)
    batch_size = TrainConfig.model_fields["batch_size"].default  # what the recommended run will use
    seq_len = int(min(chosen_length, max(profile.token_length["p90"], 8)))
    throughput = probe_throughput(encoder, tokenizer, texts, chosen_length, batch_size)
    epochs_full = int(epochs_with_enough_steps(TrainConfig.model_fields["epochs"].default, profile.num_train, batch_size))
    situation = Situation(
        num_examples=profile.num_train,
        domain_similarity=domain.score,
        memory_gb=memory_gb,
        model_memory_gb=expected_memory_gb("full", num_params, hidden, layers, batch_size, seq_len),
        budget_seconds=budget_seconds,
        full_ft_seconds=expected_seconds("full", throughput, profile.num_train, epochs_full, profile.num_validation, batch_size),
        examples_per_class=_median_per_class(profile.class_counts),
    )
    rule = decide(situation, handler)
    # The engine raises the epochs of short runs (too few optimizer steps); plan with what will run.
    epochs = int(epochs_with_enough_steps(rule.epochs, profile.num_train, batch_size))
    dapt = None
    if unlabeled is not None:
        from thawkit.data.texts import read_texts

        dapt = dapt_advice(domain.score, len(read_texts(Path(unlabeled), flag="--unlabeled")))
        dapt["unlabeled"] = str(unlabeled)
    alternatives = {
        name: {
            "expected_seconds": round(expected_seconds(name, throughput, profile.num_train, epochs, profile.num_validation, batch_size), 1),
            "expected_memory_gb": expected_memory_gb(name, num_params, hidden, layers, batch_size, seq_len),
        }
        for name in strategies_in_display_order()
    }
    reasons = [
        handler.describe_data(profile.num_train, profile.num_classes),
        f"domain similarity {domain.score:.2f} (1 = general English; "
        + ", ".join(f"{k} {v:.2f}" for k, v in domain.parts.items()) + ")",
        rule.reason,
    ]
    if budget_seconds is not None:
        reasons.append(f"budget {budget}: full fine-tuning is expected to take {situation.full_ft_seconds / 60:.1f} min")
    return Advice(
        strategy=rule.strategy,
        learning_rate=get_strategy_class(rule.strategy)().defaults_for(handler.name, num_params)["lr"],
        epochs=epochs,
        batch_size=batch_size,
        max_length=chosen_length,
        expected_seconds=alternatives[rule.strategy]["expected_seconds"],
        expected_memory_gb=alternatives[rule.strategy]["expected_memory_gb"],
        rule=rule.name,
        reasons=reasons,
        warnings=[*rule.warnings, *profile.notes, *([busy] if busy else []),
                  *([handler.decoder_warning] if handler.decoder_warning and not not_a_decoder(encoder.config) else [])],
        suggestions=list(rule.suggestions),
        domain=domain,
        profile=profile,
        alternatives=alternatives,
        dapt=dapt,
    )
