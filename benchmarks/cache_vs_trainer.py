"""thawkit (frozen-layer cache) against the plain transformers Trainer, same model, data and machine.

Both sides: the same real model (``--model``: the embedded MiniLM-L6 encoder, or the embedded
smollm2-135m decoder), N SST-2 training sentences, max length 128, E epochs, batch 32, one seed,
evaluation every epoch, the same learning rate, warmup and weight decay, the same parameters frozen
(the plain side sets ``requires_grad=False`` on the embeddings and the bottom two thirds of the
layers for partial freezing; for gradual unfreezing a callback thaws one more layer from the top at
each epoch, embeddings last). A decoder without a pad token gets its end-of-sequence token on both
sides, as the transformers docs do it. Each run is a fresh process so
peak memory is its own. Wall time is end to end from the same start: data loading, tokenization,
(thawkit: the cached pass), training, per-epoch evaluation and the final validation metric.

    python benchmarks/cache_vs_trainer.py --out benchmarks/results/cache_vs_trainer.json
    python benchmarks/cache_vs_trainer.py --model smollm2-135m --strategies partial,gradual --train-size 2000 \
        --epochs 3 --out benchmarks/results/cache_vs_trainer_smollm2.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "datasets" / "sst2"


def prepare_data(workdir: Path, train_size: int, val_size: int, seed: int) -> tuple[Path, Path]:
    import pandas as pd

    read = lambda name: pd.read_csv(SST2 / name, sep="\t", quoting=3)  # noqa: E731
    train = read("train.tsv").sample(n=train_size, random_state=seed)
    validation = read("validation.tsv").sample(n=val_size, random_state=seed)
    workdir.mkdir(parents=True, exist_ok=True)
    train.to_csv(workdir / "train.tsv", sep="\t", index=False)
    validation.to_csv(workdir / "validation.tsv", sep="\t", index=False)
    return workdir / "train.tsv", workdir / "validation.tsv"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_thawkit(spec: dict) -> dict:
    import transformers  # noqa: F401  (import time is not part of either side's measurement)
    from transformers import Trainer  # noqa: F401

    import thawkit
    import thawkit.api  # noqa: F401
    import thawkit.engine.cache.cached_training  # noqa: F401

    started = time.perf_counter()
    run = thawkit.train(
        model=spec["model"], data=spec["train"], validation=spec["validation"], text_col="sentence", label_col="label",
        strategy=spec["strategy"], strategy_options=spec["options"], epochs=spec["epochs"], lr=spec["lr"],
        batch_size=32, max_length=128, seed=spec["seed"], out=spec["out"], overwrite=True,
        early_stopping_patience=0, select_best=False, cache_dtype=spec["cache_dtype"], cache_dir=spec["cache_dir"],
        metric="accuracy",
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "train_seconds": run.info["train_seconds"],
        "cache": run.info["cache"],
        "accuracy": run.metrics["validation"]["accuracy"],
        "peak_rss_mb": peak_rss_mb(),
    }


def run_plain_trainer(spec: dict) -> dict:
    import numpy as np
    import pandas as pd
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer, TrainerCallback,
        TrainingArguments, set_seed,
    )

    from thawkit.models.backbone import resolve_model_path

    started = time.perf_counter()
    set_seed(spec["seed"])
    path = resolve_model_path(spec["model"])
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model.config.pad_token_id = tokenizer.pad_token_id

    def load(file: str) -> Dataset:
        frame = pd.read_csv(file, sep="\t", quoting=3)
        dataset = Dataset.from_dict({"text": frame["sentence"].astype(str).tolist(), "labels": frame["label"].tolist()})
        return dataset.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True, remove_columns=["text"])

    train, validation = load(spec["train"]), load(spec["validation"])
    body = model.base_model  # BertModel: .embeddings + .encoder.layer; LlamaModel: .embed_tokens + .layers
    layers = body.encoder.layer if hasattr(body, "encoder") else body.layers
    embeddings = body.embeddings if hasattr(body, "embeddings") else body.embed_tokens
    groups = {"embeddings": list(embeddings.parameters())}
    for i, layer in enumerate(layers):
        groups[f"layer.{i}"] = list(layer.parameters())

    def freeze(blocks_trainable: set[str]) -> None:
        for block, params in groups.items():
            for p in params:
                p.requires_grad_(block in blocks_trainable)

    num_layers = len(layers)
    callbacks = []
    if spec["strategy"] == "frozen":
        freeze(set())
    elif spec["strategy"] == "partial":
        k = spec["options"]["freeze_layers"]
        freeze({f"layer.{i}" for i in range(k, num_layers)})
    elif spec["strategy"] == "gradual":
        freeze(set())

        class ThawOneLayerPerEpoch(TrainerCallback):
            def on_epoch_begin(self, args, state, control, **kwargs):
                stage = int(state.epoch + 1e-6)
                thawed = {f"layer.{num_layers - 1 - i}" for i in range(min(stage, num_layers))}
                if stage > num_layers:
                    thawed.add("embeddings")
                freeze(thawed)

        callbacks.append(ThawOneLayerPerEpoch())

    if spec["strategy"] == "gradual":
        # The plain Trainer builds its optimizer from requires_grad at the start: give it every
        # parameter (AdamW skips those without gradients) so thawed layers can train.
        for p in model.parameters():
            p.requires_grad_(True)
        optimizer_params = [
            {"params": [p for n, p in model.named_parameters() if not n.endswith("bias") and "LayerNorm" not in n], "weight_decay": 0.01},
            {"params": [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(optimizer_params, lr=spec["lr"])
        freeze(set())
    else:
        optimizer = None

    def accuracy(eval_pred) -> dict:
        return {"accuracy": float((np.argmax(eval_pred.predictions, -1) == eval_pred.label_ids).mean())}

    args = TrainingArguments(
        output_dir=spec["out"], num_train_epochs=spec["epochs"], learning_rate=spec["lr"], per_device_train_batch_size=32,
        per_device_eval_batch_size=64, warmup_steps=0.1, weight_decay=0.01, eval_strategy="epoch", save_strategy="no",
        logging_strategy="epoch", report_to="none", seed=spec["seed"], disable_tqdm=True, dataloader_pin_memory=False,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=train, eval_dataset=validation, data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy, callbacks=callbacks, optimizers=(optimizer, None) if optimizer is not None else (None, None),
    )
    train_started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_started
    result = trainer.evaluate()
    return {
        "seconds": time.perf_counter() - started,
        "train_seconds": train_seconds,
        "accuracy": result["eval_accuracy"],
        "peak_rss_mb": peak_rss_mb(),
    }


def child(spec_json: str) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from thawkit.logging_setup import quiet_libraries

    quiet_libraries()
    spec = json.loads(spec_json)
    result = run_thawkit(spec) if spec["side"] == "thawkit" else run_plain_trainer(spec)
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6", help="a thawkit alias or checkpoint folder, both sides")
    parser.add_argument("--strategies", default="frozen,partial,gradual")
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--val-size", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache-dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/thawkit-bench"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cache_vs_trainer.json")
    parser.add_argument("--sides", default="plain,thawkit", help="which sides to run (plain, thawkit)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    train, validation = prepare_data(args.workdir, args.train_size, args.val_size, args.seed)
    import thawkit  # noqa: F401  (the default LR per strategy comes from the registry)
    from transformers import AutoConfig

    from thawkit.models.backbone import resolve_model_path
    from thawkit.registry import get_strategy_class

    # gradual: one layer per epoch on both sides (the plain side's callback thaws per epoch; thawkit's
    # default spreads the stages over the run, everything training after half of it: other work).
    num_layers = AutoConfig.from_pretrained(resolve_model_path(args.model)).num_hidden_layers
    options = {"frozen": {}, "partial": {"freeze_layers": round(2 * num_layers / 3)}, "gradual": {"per_epoch": True}}
    results = []
    for strategy in args.strategies.split(","):
        row = {"strategy": strategy, "options": options[strategy]}
        for side in args.sides.split(","):
            spec = {
                "side": side, "model": args.model, "strategy": strategy, "options": options[strategy], "epochs": args.epochs, "seed": args.seed,
                "lr": get_strategy_class(strategy).default_lr, "train": str(train), "validation": str(validation),
                "out": str(args.workdir / f"{side}-{strategy}"), "cache_dtype": args.cache_dtype,
                "cache_dir": str(args.workdir / f"cache-{strategy}"),
            }
            import shutil

            shutil.rmtree(spec["cache_dir"], ignore_errors=True)  # a cold cache: the pass is timed
            env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, env=env)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                raise SystemExit(f"{side} {strategy} failed:\n{proc.stderr[-4000:]}")
            row[side] = json.loads(lines[-1][len("RESULT "):])
            print(f"{strategy:8s} {side:8s} {row[side]['seconds']:8.1f}s  acc {row[side]['accuracy']:.4f}  "
                  f"peak {row[side]['peak_rss_mb']:.0f} MB", flush=True)
        samples = args.train_size * args.epochs
        for side in args.sides.split(","):
            row[side]["samples_per_second"] = samples / row[side]["seconds"]
        if "plain" in row and "thawkit" in row:
            row["speedup"] = row["plain"]["seconds"] / row["thawkit"]["seconds"]
            row["accuracy_delta"] = row["thawkit"]["accuracy"] - row["plain"]["accuracy"]
            print(f"{strategy:8s} speedup {row['speedup']:.2f}x  accuracy delta {row['accuracy_delta']:+.4f}", flush=True)
        results.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": " ".join(["python", "benchmarks/cache_vs_trainer.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {"model": args.model, "train_size": args.train_size, "val_size": args.val_size, "epochs": args.epochs, "batch_size": 32,
                     "max_length": 128, "seed": args.seed, "cache_dtype": args.cache_dtype},
        "results": results,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
