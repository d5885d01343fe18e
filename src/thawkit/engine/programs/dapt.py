"""Domain- (and task-) adaptive pretraining: continued masked-LM training on unlabeled text
(Gururangan et al. 2020), on the Trainer, before fine-tuning.

Texts are concatenated and cut into max-length blocks (or kept one per line); masking is dynamic
(new masks every epoch, at collate time; whole words with the fast tokenizer's offsets). The MLM
loss and pseudo-perplexity (exp of the loss on a fixed masking) are measured before and after on a
reserved slice of the domain text and on a general-English probe (what was forgotten).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thawkit.data.texts import read_texts
from thawkit.errors import ConfigError, DataError
from thawkit.rundir import check_destination, partial_dir_for, publish, write_json

log = logging.getLogger("thawkit")

DAPT_FILE = "dapt.json"  # what the folder is: base model, texts, settings, metrics


@dataclass
class DaptSettings:
    text: Path
    model: str
    out: Path
    epochs: float = 1.0
    max_steps: int | None = None
    mlm_probability: float = 0.15
    whole_word: bool = False
    line_by_line: bool = False
    max_length: int = 128
    lr: float = 1e-4
    batch_size: int = 32
    eval_fraction: float = 0.05
    text_col: str | None = None
    seed: int = 42
    overwrite: bool = False


def _blocks(tokenizer: Any, texts: list[str], max_length: int, line_by_line: bool, whole_word: bool) -> list[dict[str, list[Any]]]:
    extra = {"return_offsets_mapping": True} if whole_word else {}
    if line_by_line:
        encoded = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True, **extra)
        keys = list(encoded.keys())
        return [{k: encoded[k][i] for k in keys} for i in range(len(texts))]
    # Concatenate everything and cut into blocks of max_length (run_mlm's group_texts): no padding waste.
    encoded = tokenizer(texts, return_special_tokens_mask=True, **extra)
    keys = [k for k in encoded.keys() if k != "token_type_ids"]
    joined = {k: [x for row in encoded[k] for x in row] for k in keys}
    total = (len(joined["input_ids"]) // max_length) * max_length
    if total == 0:
        raise DataError(f"the texts hold {len(joined['input_ids'])} tokens, less than one block of --max-length {max_length}; "
                        "fix: more text, a smaller --max-length, or --line-by-line")
    return [{k: joined[k][i : i + max_length] for k in keys} for i in range(0, total, max_length)]


class PaddingCollator:
    """Pads every field itself (offset_mapping included, which the tokenizer's pad cannot) before
    the masking collator sees the batch."""

    def __init__(self, collator: Any, pad_id: int) -> None:
        self.collator, self.pad_id = collator, pad_id

    def __call__(self, examples: list[dict[str, Any]]) -> Any:
        width = max(len(e["input_ids"]) for e in examples)
        fill = {"input_ids": self.pad_id, "attention_mask": 0, "special_tokens_mask": 1, "offset_mapping": (0, 0)}
        padded = []
        for example in examples:
            missing = width - len(example["input_ids"])
            row = {k: list(v) + [fill.get(k, 0)] * missing for k, v in example.items() if k in fill}
            row.setdefault("attention_mask", [1] * (width - missing) + [0] * missing)
            padded.append(row)
        return self.collator(padded)


def _fixed_masks(collator: Any, blocks: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """One masking of an evaluation set, drawn once, so before and after see the same masks."""
    import torch

    torch.manual_seed(seed)
    batches = []
    for start in range(0, len(blocks), 32):
        batch = collator([dict(b) for b in blocks[start : start + 32]])
        batches.append({k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")})
    return batches


def _mlm_loss(model: Any, batches: list[dict[str, Any]]) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for batch in batches:
            masked = int((batch["labels"] != -100).sum())
            if masked == 0:
                continue
            total += float(model(**batch).loss) * masked
            count += masked
    return total / max(count, 1)


def _scores(model: Any, eval_sets: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    result = {}
    for name, batches in eval_sets.items():
        loss = _mlm_loss(model, batches)
        result[name] = {"mlm_loss": round(loss, 4), "pseudo_perplexity": round(math.exp(min(loss, 50.0)), 3)}
    return result


def run_dapt(settings: DaptSettings, progress: bool = False) -> dict[str, Any]:
    """Continued MLM pretraining; writes a backbone folder ``thawkit train --model`` accepts."""
    import random

    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, PrinterCallback, Trainer, TrainingArguments, set_seed
    from transformers.utils import logging as hf_logging

    from thawkit.data.probe import general_sentences
    from thawkit.models.hardware import fast_bf16_available
    from thawkit.models.backbone import copy_sentence_transformers_modules, load_tokenizer, portable_model_name, resolve_model_path

    import warnings

    warnings.filterwarnings("ignore", message="Random token replacement is not supported with whole word masking")
    started = time.perf_counter()
    if not 0 < settings.mlm_probability < 1:
        raise ConfigError(f"--mlm-prob {settings.mlm_probability} must be between 0 and 1; fix: 0.15 is usual")
    check_destination(settings.out, settings.overwrite)
    texts = read_texts(settings.text, settings.text_col)
    set_seed(settings.seed)
    tokenizer = load_tokenizer(settings.model)
    if settings.whole_word and not getattr(tokenizer, "is_fast", False):
        raise ConfigError("--whole-word needs a fast tokenizer (offsets); fix: drop --whole-word or use a model with tokenizer.json")
    path = resolve_model_path(settings.model)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, loading = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load {settings.model!r} as a masked-LM model: {str(exc).splitlines()[0]}; fix: an encoder "
                          "checkpoint (BERT, RoBERTa, MiniLM, DeBERTa ...)") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    new_head = sorted(k for k in loading.get("missing_keys", []) if any(t in k for t in ("predictions", "lm_head", "vocab_")))
    if new_head:
        log.warning("%s has no trained MLM head (e.g. a sentence-transformers checkpoint): a new one is initialised, its "
                    "decoder tied to the input embeddings (%d tensors new); its loss starts high and falls as it learns",
                    settings.model, len(new_head))

    rng = random.Random(settings.seed)
    shuffled = list(texts)
    rng.shuffle(shuffled)
    held = max(1, int(round(len(shuffled) * settings.eval_fraction)))
    held_out, train_texts = shuffled[:held], shuffled[held:]
    max_length = min(settings.max_length, int(getattr(model.config, "max_position_embeddings", 512) or 512))
    train_blocks = _blocks(tokenizer, train_texts, max_length, settings.line_by_line, settings.whole_word)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eval_collator = PaddingCollator(DataCollatorForLanguageModeling(tokenizer, mlm_probability=settings.mlm_probability,
                                                                    whole_word_mask=settings.whole_word, seed=settings.seed), pad_id)
    eval_sets = {
        "domain_held_out": _fixed_masks(eval_collator, _blocks(tokenizer, held_out, max_length, True, settings.whole_word), settings.seed),
        "general_english": _fixed_masks(eval_collator, _blocks(tokenizer, general_sentences(), max_length, True, settings.whole_word),
                                        settings.seed),
    }
    before = _scores(model, eval_sets)

    final = settings.out
    partial = partial_dir_for(final)
    shutil.rmtree(partial, ignore_errors=True)
    collator = PaddingCollator(DataCollatorForLanguageModeling(tokenizer, mlm_probability=settings.mlm_probability,
                                                               whole_word_mask=settings.whole_word), pad_id)
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch, num_train_epochs=settings.epochs, max_steps=settings.max_steps or -1, learning_rate=settings.lr,
            per_device_train_batch_size=settings.batch_size, weight_decay=0.01, warmup_steps=0.06, lr_scheduler_type="linear",
            save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none", seed=settings.seed,
            disable_tqdm=not progress, remove_unused_columns=False, dataloader_num_workers=0, use_cpu=not _has_gpu(),
            bf16=fast_bf16_available(),  # bf16 autocast, fp32 master weights, where the hardware is fast at it
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_blocks, data_collator=collator)
        trainer.remove_callback(PrinterCallback)  # thawkit prints its own summary
        train_started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - train_started
    after = _scores(model, eval_sets)
    try:
        partial.mkdir(parents=True)
        model.save_pretrained(str(partial))
        tokenizer.save_pretrained(str(partial))
        copy_sentence_transformers_modules(Path(path), partial)
        facts = {
            "kind": "dapt", "base_model": settings.model, "base_model_portable": portable_model_name(settings.model),
            "text": str(settings.text), "documents": {"train": len(train_texts), "held_out": len(held_out)},
            "blocks": len(train_blocks), "max_length": max_length, "mlm_probability": settings.mlm_probability,
            "whole_word": settings.whole_word, "line_by_line": settings.line_by_line, "epochs": settings.epochs,
            "max_steps": settings.max_steps, "learning_rate": settings.lr, "batch_size": settings.batch_size,
            "global_steps": int(trainer.state.global_step), "new_mlm_head": bool(new_head), "seed": settings.seed,
            "bf16_autocast": bool(args.bf16), "train_seconds": round(train_seconds, 2), "total_seconds": round(time.perf_counter() - started, 2),
        }
        metrics = {"before": before, "after": after}
        (partial / "README.md").write_text(dapt_card(facts, metrics, final), encoding="utf-8")
        write_json(partial / DAPT_FILE, {**facts, "metrics": metrics})
        write_json(partial / "metrics.json", metrics)
        publish(partial, final, settings.overwrite)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return {**facts, "metrics": metrics, "path": str(final)}


def dapt_card(facts: dict[str, Any], metrics: dict[str, Any], final: Path) -> str:
    """README.md of an adapted encoder: huggingface_hub card metadata (the base, its license) and
    what the adaptation did, measured."""
    from huggingface_hub import ModelCardData

    from thawkit.engine.core.artifacts import base_card_metadata
    from thawkit.models.backbone import lineage_model_name

    card = ModelCardData(base_model=lineage_model_name(facts["base_model"]), library_name="transformers", pipeline_tag="fill-mask",
                         tags=["thawkit", "domain-adaptive-pretraining"], model_name=final.name,
                         **base_card_metadata(facts["base_model"]))
    rows = [f"| {split.replace('_', ' ')} | {name.replace('_', ' ')} | {metrics['before'][split][name]:.3f} | {value:.3f} |"
            for split, values in metrics["after"].items() if isinstance(values, dict)
            for name, value in values.items()
            if isinstance(value, (int, float)) and isinstance(metrics["before"].get(split, {}).get(name), (int, float))]
    return "\n".join([
        "---", card.to_yaml().strip(), "---", "",
        f"# {lineage_model_name(facts['base_model'])} adapted to a domain with thawkit dapt", "",
        f"Continued masked-LM pretraining ({'whole-word' if facts['whole_word'] else 'token'} masking, "
        f"{facts['mlm_probability']:.0%}) on {facts['documents']['train']} documents of `{Path(facts['text']).name}`: "
        f"{facts['global_steps']} steps at {facts['max_length']} tokens, learning rate {facts['learning_rate']}.", "",
        "| text | measure | before | after |", "|---|---|---|---|", *rows, "",
        "## Use", "", "```bash", f"thawkit train --model {final} --data YOUR_LABELED_DATA.csv --strategy gradual", "```", "",
        "The folder is a standard `AutoModelForMaskedLM` folder (and a sentence-transformers one when the base was); "
        "`dapt.json` records every setting.", "",
    ])


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()
