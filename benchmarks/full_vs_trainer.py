"""Full fine-tuning and LoRA: thawkit's defaults against the plain transformers Trainer (fp32).

Same model (the real MiniLM-L6), data, epochs, batch 32, learning rate, head LR multiplier, warmup,
weight decay and LoRA configuration on both sides; one seed; evaluation every epoch. The plain side
is what a user writes from the transformers docs: ``DataCollatorWithPadding`` (or the token
classification collator), random batches, fp32. thawkit runs with its defaults: bf16 autocast where
the CPU has AVX512-BF16 (fp32 master weights), length-grouped batches. Each run is a fresh process.

Reported per run: whole-process wall time, training samples/s (training examples x epochs / the
training loop's seconds), the validation metric, and the achieved share of this machine's measured
matmul peak (useful training FLOPs = 6 x encoder matmul parameters x real tokens, plus attention,
over the training seconds; the peak is a 2048x2048 matmul in fp32 and in bf16 on the same threads).

    python benchmarks/full_vs_trainer.py --datasets sst2,conll --strategies full,lora
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def matmul_peak_gflops() -> dict[str, float]:
    import torch

    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        a @ b
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(5):
                a @ b
            best = min(best, (time.perf_counter() - started) / 5)
        peaks[name] = 2 * 2048**3 / best / 1e9
    return peaks


def training_flops(token_counts: list[int], hidden: int, layers: int, intermediate: int, epochs: float) -> float:
    """Forward + backward (3x forward) matmul FLOPs of the encoder over the real tokens of an epoch."""
    per_token = 2 * layers * (4 * hidden * hidden + 2 * hidden * intermediate)
    attention = sum(2 * 2 * layers * n * n * hidden for n in token_counts)  # scores and weighted sum
    return 3 * (per_token * sum(token_counts) + attention) * epochs


# --- data --------------------------------------------------------------------------------------

def prepare(dataset: str, workdir: Path, train_size: int) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    if dataset == "sst2":
        from cache_vs_trainer import prepare_data

        train, validation = prepare_data(workdir / "sst2", train_size, 872, seed=0)
        return {"task": "classification", "train": str(train), "validation": str(validation), "metric": "accuracy"}
    from defaults_sweep import _subset_conll

    train = _subset_conll(SHARED / "conll2003" / "train.txt", workdir / "conll-train.txt", train_size)
    validation = _subset_conll(SHARED / "conll2003" / "validation.txt", workdir / "conll-validation.txt", 1000)
    return {"task": "ner", "train": str(train), "validation": str(validation), "metric": "f1"}


# --- the two sides -----------------------------------------------------------------------------

def run_thawkit(spec: dict) -> dict:
    import transformers  # noqa: F401  (import time is not part of either side's measurement)
    from transformers import Trainer  # noqa: F401

    import thawkit
    import thawkit.api  # noqa: F401

    started = time.perf_counter()
    columns = {"text_col": "sentence", "label_col": "label"} if spec["task"] == "classification" else {}
    run = thawkit.train(
        data=spec["train"], validation=spec["validation"], task=spec["task"], strategy=spec["strategy"], epochs=spec["epochs"],
        batch_size=32, seed=spec["seed"], out=spec["out"], overwrite=True, early_stopping_patience=0, select_best=False,
        metric=spec["metric"], progress="off", precision=spec["precision"], **columns,
    )
    return {
        "seconds": time.perf_counter() - started,
        "train_seconds": run.info["train_seconds"],
        "timings": run.info.get("timings"),
        "metric": run.metrics["validation"][spec["metric"]],
        "lr": run.info.get("lr"), "head_lr_mult": run.info.get("head_lr_mult"),
    }


def _plain_data(spec: dict, tokenizer):
    from datasets import Dataset

    if spec["task"] == "classification":
        import pandas as pd
        from transformers import DataCollatorWithPadding

        def load(file: str) -> Dataset:
            frame = pd.read_csv(file, sep="\t", quoting=3)
            data = Dataset.from_dict({"text": frame["sentence"].astype(str).tolist(), "labels": frame["label"].tolist()})
            return data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True, remove_columns=["text"])

        return load(spec["train"]), load(spec["validation"]), DataCollatorWithPadding(tokenizer), ["0", "1"]
    from transformers import DataCollatorForTokenClassification

    from thawkit.data.ner import read_ner_file
    from thawkit.tasks.ner import tokenize_sentences

    train, validation = read_ner_file(spec["train"]), read_ner_file(spec["validation"])
    labels = sorted({tag for _, tags in train + validation for tag in tags})
    pairs = lambda sentences: [(words, tags) for words, tags in sentences]  # noqa: E731
    return (tokenize_sentences(pairs(train), tokenizer, 128, labels), tokenize_sentences(pairs(validation), tokenizer, 128, labels),
            DataCollatorForTokenClassification(tokenizer), labels)


def run_plain_trainer(spec: dict) -> dict:
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer, Trainer, TrainingArguments,
        set_seed,
    )

    from thawkit.models.backbone import resolve_model_path
    from thawkit.tasks.ner import ner_scalar_metrics

    started = time.perf_counter()
    set_seed(spec["seed"])
    path = resolve_model_path("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(path)
    train, validation, collator, labels = _plain_data(spec, tokenizer)
    auto = AutoModelForSequenceClassification if spec["task"] == "classification" else AutoModelForTokenClassification
    model = auto.from_pretrained(path, num_labels=len(labels))
    head = ["bert.pooler.dense", "classifier"] if spec["task"] == "classification" else ["classifier"]
    if spec["strategy"] == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            task_type="SEQ_CLS" if spec["task"] == "classification" else "TOKEN_CLS", r=8, lora_alpha=16, lora_dropout=0.1,
            target_modules=["query", "value"], modules_to_save=head))
    lr, mult = spec["lr"], spec["head_lr_mult"]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    is_head = lambda n: any(h in n for h in head)  # noqa: E731
    no_decay = lambda n: n.endswith("bias") or "LayerNorm" in n  # noqa: E731
    groups = [{"params": [p for n, p in named if is_head(n) == in_head and no_decay(n) == nd],
               "lr": lr * (mult if in_head else 1.0), "weight_decay": 0.0 if nd else 0.01}
              for in_head in (False, True) for nd in (False, True)]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)

    def metric(eval_pred) -> dict:
        if spec["task"] == "classification":
            return {"accuracy": float((np.argmax(eval_pred.predictions, -1) == eval_pred.label_ids).mean())}
        return ner_scalar_metrics(eval_pred.predictions, eval_pred.label_ids, labels)

    args = TrainingArguments(
        output_dir=spec["out"], num_train_epochs=spec["epochs"], learning_rate=lr, per_device_train_batch_size=32,
        per_device_eval_batch_size=64, warmup_steps=0.1, weight_decay=0.01, eval_strategy="epoch", save_strategy="no",
        logging_strategy="epoch", report_to="none", seed=spec["seed"], disable_tqdm=True, dataloader_pin_memory=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=validation, data_collator=collator,
                      compute_metrics=metric, optimizers=(optimizer, None))
    train_started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_started
    result = trainer.evaluate()
    return {"seconds": time.perf_counter() - started, "train_seconds": train_seconds, "metric": result[f"eval_{spec['metric']}"]}


def token_counts(spec: dict) -> list[int]:
    from transformers import AutoTokenizer

    from thawkit.models.backbone import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm-l6"))
    train, _, _, _ = _plain_data(spec, tokenizer)
    return [len(ids) for ids in train["input_ids"]]


def child(spec_json: str) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from thawkit.logging_setup import quiet_libraries

    quiet_libraries()
    spec = json.loads(spec_json)
    result = run_thawkit(spec) if spec["side"] == "thawkit" else run_plain_trainer(spec)
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="sst2,conll")
    parser.add_argument("--strategies", default="full,lora")
    parser.add_argument("--sst2-train", type=int, default=2000)
    parser.add_argument("--conll-train", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--precision", default="auto", help="thawkit's --precision (auto, bf16, fp32)")
    parser.add_argument("--sides", default="plain,thawkit")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/thawkit-full-bench"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "full_vs_trainer.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    peaks = matmul_peak_gflops()
    print(f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s", flush=True)
    import thawkit  # noqa: F401
    from thawkit.registry import get_strategy_class

    results = []
    for dataset in args.datasets.split(","):
        size = args.sst2_train if dataset == "sst2" else args.conll_train
        data = prepare(dataset, args.workdir, size)
        counts = token_counts({**data})
        for strategy in args.strategies.split(","):
            defaults = get_strategy_class(strategy)().defaults_for(data["task"], 22_000_000)  # MiniLM-L6: 22.7M parameters
            row = {"dataset": dataset, "train_size": size, "strategy": strategy, "lr": defaults["lr"],
                   "head_lr_mult": defaults["head_lr_mult"]}
            for side in args.sides.split(","):
                spec = {**data, "side": side, "strategy": strategy, "epochs": args.epochs, "seed": args.seed,
                        "lr": defaults["lr"], "head_lr_mult": defaults["head_lr_mult"], "precision": args.precision,
                        "out": str(args.workdir / f"{dataset}-{side}-{strategy}")}
                proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                                      env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    raise SystemExit(f"{dataset} {side} {strategy} failed:\n{proc.stderr[-4000:]}")
                result = json.loads(lines[-1][len("RESULT "):])
                result["samples_per_second"] = size * args.epochs / result["train_seconds"]
                flops = training_flops(counts, 384, 6, 1536, args.epochs)
                achieved = flops / result["train_seconds"] / 1e9
                result["achieved_gflops"] = achieved
                result["share_of_fp32_peak"] = achieved / peaks["fp32"]
                result["share_of_bf16_peak"] = achieved / peaks["bf16"]
                row[side] = result
                print(f"{dataset:6s} {strategy:5s} {side:8s} {result['seconds']:7.1f}s  train {result['train_seconds']:6.1f}s  "
                      f"{result['samples_per_second']:6.1f} samples/s  {data['metric']} {result['metric']:.4f}  "
                      f"{achieved:.0f} GFLOP/s", flush=True)
            if "plain" in row and "thawkit" in row:
                row["samples_per_second_ratio"] = row["thawkit"]["samples_per_second"] / row["plain"]["samples_per_second"]
                row["wall_ratio"] = row["plain"]["seconds"] / row["thawkit"]["seconds"]
                row["metric_delta"] = row["thawkit"]["metric"] - row["plain"]["metric"]
                print(f"{dataset:6s} {strategy:5s} samples/s {row['samples_per_second_ratio']:.2f}x  wall {row['wall_ratio']:.2f}x  "
                      f"{data['metric']} delta {row['metric_delta']:+.4f}", flush=True)
            results.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": " ".join(["python", "benchmarks/full_vs_trainer.py", *sys.argv[1:]]),
               "machine": {"cpus": os.cpu_count(), "matmul_peak_gflops": peaks}, "epochs": args.epochs, "seed": args.seed,
               "results": results}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
