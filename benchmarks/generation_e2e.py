"""E2E NLG with the embedded smollm2-135m: thawkit's generation strategies, and TRL's SFTTrainer with
the same model, data, LoRA settings, learning rate, batch size and epochs, in one invocation.

Data: ``../shared/datasets/e2e_nlg``. The training meaning representations (MRs) are shuffled with a
fixed seed; ``--validation-mrs`` of them (all their references) are held out for validation, the next
``--train-mrs`` train; the test split is the first ``--test-mrs`` test MRs with all their
references (630: the whole test set). Each side runs in a fresh process.

Reported per side: training seconds (the training loop, with one validation pass per epoch on both
sides; for thawkit's cached strategies plus the cache pass, computed cold in a fresh cache folder),
training tokens/s (the real tokens of the training examples x epochs / those seconds), and
test BLEU / ROUGE-L / exact match of greedy answers, decoded and scored the same way for every side
(``thawkit.tasks.generation_text``: sacrebleu corpus BLEU over every reference, rouge-score ROUGE-L).

    python benchmarks/generation_e2e.py --sides frozen,lora,trl-lora --train-mrs 60 --test-mrs 100

TRL sides follow the thawkit side of the same strategy, which must come first in ``--sides``:
``trl-lora`` is SFTTrainer as its docs show it (a LoraConfig; SFTConfig's defaults, gradient
checkpointing on), ``trl-lora-nogc`` the same with gradient checkpointing off; ``trl-partial`` and
``trl-gradual`` are full-model SFTTrainer with ``requires_grad`` freezing of exactly the parameters
thawkit's run froze, stage by stage at the same steps for gradual (gradient checkpointing off: the
plain way to freeze), where thawkit trains the top from its frozen-layer cache.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
E2E = ROOT.parent / "shared" / "datasets" / "e2e_nlg"
RESULTS = ROOT / "benchmarks" / "results" / "generation_e2e.json"


def prepare(workdir: Path, train_mrs: int, validation_mrs: int, test_mrs: int, seed: int = 0) -> dict[str, Path]:
    import pandas as pd

    workdir.mkdir(parents=True, exist_ok=True)
    train = pd.read_csv(E2E / "train.csv")
    mrs = list(dict.fromkeys(train["mr"]))
    random.Random(seed).shuffle(mrs)
    held, kept = set(mrs[:validation_mrs]), set(mrs[validation_mrs : validation_mrs + train_mrs])
    test = pd.read_csv(E2E / "test.csv")
    tested = set(list(dict.fromkeys(test["mr"]))[:test_mrs])
    paths = {"train": workdir / "train.csv", "validation": workdir / "validation.csv", "test": workdir / "test.csv"}
    train[train["mr"].isin(kept)].to_csv(paths["train"], index=False)
    train[train["mr"].isin(held)].to_csv(paths["validation"], index=False)
    test[test["mr"].isin(tested)].to_csv(paths["test"], index=False)
    return paths


def train_tokens(paths: dict[str, Path], max_length: int) -> int:
    """Real tokens of the training examples as thawkit encodes them (the chat template, the completion)."""
    from thawkit.data.generation import read_generation_file
    from thawkit.models.backbone import load_tokenizer
    from thawkit.tasks.generation_text import encode_example

    tokenizer = load_tokenizer("smollm2-135m")
    examples, _ = read_generation_file(paths["train"], "mr", "ref")
    rows = [encode_example(tokenizer, e.messages, e.completion, max_length) for e in examples]
    return sum(len(r["input_ids"]) for r in rows if r is not None)


def run_thawkit(strategy: str, paths: dict[str, Path], out: Path, args: argparse.Namespace, cache: bool = True) -> dict:
    import thawkit

    import shutil

    options = {"lr": args.lr} if args.lr else {}
    cache_dir = out.parent / f"cache-{strategy}"
    shutil.rmtree(cache_dir, ignore_errors=True)  # a cold cache: its pass is part of the timing
    run = thawkit.train(task="generation", model="smollm2-135m", strategy=strategy, data=paths["train"],
                        validation=paths["validation"], test=paths["test"], text_col="mr", label_col="ref", epochs=args.epochs,
                        batch_size=args.batch_size, max_length=args.max_length, out=out, overwrite=True, progress="lines",
                        generation_samples=0, measure_forgetting=False, cache=cache, cache_dir=cache_dir, **options)
    test, cache = run.metrics["test"], run.info["cache"]
    cache_seconds = cache.get("pass_seconds", 0.0) if cache.get("used") else 0.0
    return {"train_seconds": round(run.info["train_seconds"] + cache_seconds, 3), "cache_pass_seconds": cache_seconds,
            "lr": run.info["learning_rate"], "steps": run.info["global_steps"],
            "trainable_params": run.info["trainable_params"], "test": {k: test.get(k) for k in ("bleu", "rouge_l", "exact_match", "loss")},
            "max_new_tokens": run.info["config"]["max_new_tokens"], "cache": cache.get("used"), "stages": run.info["stages"],
            "strategy_resolved": run.info["strategy_resolved"], "samples": test.get("samples", [])[:3], "lora": _adapter(out)}


def _adapter(folder: Path) -> dict | None:
    path = folder / "adapter_config.json"
    if not path.exists():
        return None
    adapter = json.loads(path.read_text())
    return {k: adapter.get(k) for k in ("r", "lora_alpha", "lora_dropout", "target_modules", "use_dora", "use_rslora")}


def run_trl(paths: dict[str, Path], out: Path, args: argparse.Namespace, strategy: str, reference: dict, checkpointing: bool) -> dict:
    """TRL's SFTTrainer as its docs show it: conversational prompt/completion data (its own chat template
    handling, loss on the completion), SFTConfig with the same schedule; for LoRA a LoraConfig with
    thawkit's settings, for partial/gradual ``requires_grad`` freezing replaying thawkit's stages."""
    import pandas as pd
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from thawkit.data.generation import group_references, read_generation_file
    from thawkit.models.backbone import resolve_model_path
    from thawkit.tasks.generation_text import generate_texts, generation_options, text_scores

    def conversational(path: Path) -> Dataset:
        frame = pd.read_csv(path)
        return Dataset.from_list([{"prompt": [{"role": "user", "content": m}], "completion": [{"role": "assistant", "content": r}]}
                                  for m, r in zip(frame["mr"], frame["ref"])])

    folder = resolve_model_path("smollm2-135m")
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = SFTConfig(output_dir=str(out), per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
                       learning_rate=reference["lr"], num_train_epochs=args.epochs, warmup_steps=0.1, weight_decay=0.01,
                       lr_scheduler_type="linear", max_length=args.max_length, eval_strategy="epoch", save_strategy="no",
                       logging_steps=10, report_to=[], use_cpu=True, bf16=False, seed=42, dataloader_num_workers=0,
                       gradient_checkpointing=checkpointing)
    peft_config, callbacks = None, []
    if strategy == "lora":
        lora = reference["lora"]
        peft_config = LoraConfig(r=lora["r"], lora_alpha=lora["lora_alpha"], lora_dropout=lora["lora_dropout"],
                                 target_modules=lora["target_modules"], task_type="CAUSAL_LM", use_rslora=bool(lora.get("use_rslora")))
    else:
        callbacks.append(replay_stages(model, reference["stages"]))
    trainer = SFTTrainer(model=model, args=config, train_dataset=conversational(paths["train"]),
                         eval_dataset=conversational(paths["validation"]), processing_class=tokenizer, peft_config=peft_config,
                         callbacks=callbacks)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    examples, _ = read_generation_file(paths["test"], "mr", "ref")
    prompts, references = group_references(examples)
    answers = generate_texts(trainer.model, tokenizer, [p.messages for p in prompts], generation_options(reference["max_new_tokens"]), 32)
    trainable = {n for c in callbacks for n in c.ever_trainable} or {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    return {"train_seconds": round(seconds, 3), "lr": reference["lr"], "steps": int(trainer.state.global_step),
            "gradient_checkpointing": checkpointing,
            "trainable_params": sum(p.numel() for n, p in trainer.model.named_parameters() if n in trainable),
            "test": text_scores(answers, references), "samples": [{"prompt": p.prompt_text, "generated": a}
                                                                  for p, a in zip(prompts[:3], answers[:3])]}


def replay_stages(model, stages: list[dict]):
    """A Trainer callback freezing by ``requires_grad`` what thawkit's run froze, from the same steps.

    The optimizer is built with every parameter (the Trainer builds it before ``on_train_begin``);
    AdamW skips a parameter without a gradient, so a layer thawed later trains from then on."""
    from transformers import TrainerCallback

    from thawkit.models.layout import build_layout

    layout = build_layout(model)  # which parameter names make up thawkit's blocks (layer.i, embeddings, head)

    class ReplayStages(TrainerCallback):
        ever_trainable: set[str] = set()
        applied: int | None = None

        def apply(self, step: int) -> None:
            current = [s for s in stages if s["step"] <= step][-1]
            if current["stage"] == self.applied:
                return
            trainable = {name for block in current["trainable_blocks"] for name in layout.params[block]}
            for name, param in model.named_parameters():
                param.requires_grad_(name in trainable)
            self.ever_trainable = self.ever_trainable | trainable
            self.applied = current["stage"]

        def on_train_begin(self, args, state, control, **kwargs):
            self.apply(0)

        def on_step_begin(self, args, state, control, **kwargs):
            self.apply(state.global_step)

    return ReplayStages()


def side_main(side: str, workdir: Path, args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    paths = {k: workdir / f"{k}.csv" for k in ("train", "validation", "test")}
    if side.startswith("trl-"):
        strategy = side.removeprefix("trl-").removesuffix("-nogc")
        reference = json.loads((workdir / f"result-{strategy}.json").read_text())
        checkpointing = strategy == "lora" and not side.endswith("-nogc")
        result = run_trl(paths, workdir / side, args, strategy, reference, checkpointing)
    else:  # a thawkit strategy; "-nocache" runs it without the frozen-layer cache
        result = run_thawkit(side.removesuffix("-nocache"), paths, workdir / side, args, cache=not side.endswith("-nocache"))
    (workdir / f"result-{side}.json").write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sides", default="frozen,lora,trl-lora",
                        help="thawkit strategies (STRATEGY-nocache: without the frozen-layer cache), and trl-lora, trl-lora-nogc, "
                             "trl-partial, trl-gradual after their thawkit side; comma-separated")
    parser.add_argument("--train-mrs", type=int, default=60)
    parser.add_argument("--validation-mrs", type=int, default=50)
    parser.add_argument("--test-mrs", type=int, default=100)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=160)
    parser.add_argument("--lr", type=float, default=None, help="every side's LR (default: thawkit's per strategy; TRL takes LoRA's)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/thawkit-bench-e2e"))
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results JSON")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side_main(args.side, args.workdir, args)
        return
    paths = prepare(args.workdir, args.train_mrs, args.validation_mrs, args.test_mrs)
    tokens = train_tokens(paths, args.max_length) * args.epochs
    results: dict = {"command": " ".join(sys.argv), "train_tokens": tokens, "sides": {}}
    for side in args.sides.split(","):
        started = time.perf_counter()
        forwarded = ["--train-mrs", str(args.train_mrs), "--validation-mrs", str(args.validation_mrs), "--test-mrs", str(args.test_mrs),
                     "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
                     "--workdir", str(args.workdir), *(["--lr", str(args.lr)] if args.lr else [])]
        subprocess.run([sys.executable, __file__, *forwarded, "--side", side], check=True)
        result = json.loads((args.workdir / f"result-{side}.json").read_text())
        result["process_seconds"] = round(time.perf_counter() - started, 1)
        result["train_tokens_per_second"] = round(tokens / result["train_seconds"], 1) if result["train_seconds"] else None
        results["sides"][side] = result
        print(side, json.dumps({k: result[k] for k in ("train_seconds", "train_tokens_per_second", "test")}), flush=True)
    for side in results["sides"]:
        if side.startswith("trl-") and (strategy := side.removeprefix("trl-").removesuffix("-nogc")) in results["sides"]:
            ours, theirs = results["sides"][strategy], results["sides"][side]
            results.setdefault("versus_trl", {})[f"{strategy} vs {side}"] = {
                "throughput_ratio": round(ours["train_tokens_per_second"] / theirs["train_tokens_per_second"], 3),
                "bleu_difference": round(ours["test"]["bleu"] - theirs["test"]["bleu"], 2)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results.get("versus_trl"), indent=2))


if __name__ == "__main__":
    main()
