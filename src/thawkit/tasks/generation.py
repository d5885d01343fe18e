"""Generation: a decoder fine-tuned to write the completion of a prompt (instruction tuning,
data-to-text). The loss is on the completion's tokens only; the selection metric is validation
loss; at the end the model writes an answer to each held-out prompt and BLEU, ROUGE-L and exact
match score it against every reference of that prompt. Every strategy runs through the one
pipeline: LoRA and the PEFT family keep the pretrained LM head (nothing in ``modules_to_save``),
``frozen`` is the untrained model as a zero-shot baseline, partial and gradual train from cached
lower layers. Runs are standard causal-LM folders (or PEFT adapters on the base) that vLLM, TGI and
``transformers.pipeline("text-generation")`` load."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from torch import nn

from thawkit.data.generation import Example, group_references, load_generation_data, read_generation_file, read_prompts
from thawkit.data.tables import TableFormat
from thawkit.errors import ConfigError, DataError
from thawkit.models.backbone import load_peft_run, load_task_model
from thawkit.tasks.base import RunBase, Task, TaskData, register_task
from thawkit.tasks.generation_text import (
    argmax_aligned,
    completion_loss,
    example_tokens,
    fit_example,
    generate_texts,
    generation_options,
    has_chat_template,
    not_a_decoder,
    render,
    stop_token_ids,
    text_scores,
    token_accuracy,
)
from thawkit.tasks.generation_serving import ROUTES
from thawkit.tasks.roles import Route, Rule
from thawkit.tasks.roles.advice import MEMORY_RULE

if TYPE_CHECKING:
    from thawkit.config import TrainConfig

MAX_NEW_TOKENS_CAP = 512


@register_task("generation")
class GenerationTask(Task):
    run_type = "text-generation"
    serves_token_by_token = True
    default_metric = "loss"
    metrics = ("loss", "token_accuracy")
    peft_task_type = "CAUSAL_LM"
    generates = True
    own_settings = (("--max-new-tokens", "max_new_tokens"), ("--generation-samples", "generation_samples"))
    default_max_length = 256
    pipeline_tag = "text-generation"
    stock_python = ('from transformers import pipeline\n'
                    'generator = pipeline("text-generation", model="{run}")\n'
                    'print(generator("your prompt", max_new_tokens=64, do_sample=False)[0]["generated_text"])')

    def routes(self) -> tuple[Route, ...]:
        return ROUTES
    usage_arguments = ("Write a one-line description of a cheap Italian restaurant.",)
    example_noun = "training examples (prompt and completion)"
    length_from_data = True

    # --- data -----------------------------------------------------------------------------------

    def load_data(self, cfg: "TrainConfig") -> TaskData:
        data = load_generation_data(cfg.data, cfg.validation, cfg.test, cfg.val_fraction, cfg.data_split_seed(),
                                    cfg.text_col, cfg.label_col, TableFormat(cfg.delimiter, cfg.quotechar))
        prompts = len({e.group for e in data.train})
        return TaskData(data.train, data.validation, data.test, [], False, data.validation_source,
                        {"data_format": data.data_format, "distinct_train_prompts": prompts,
                         "distinct_validation_prompts": len({e.group for e in data.validation})})

    def check_config(self, cfg: "TrainConfig", strategy: Any) -> None:
        from transformers import AutoConfig

        from thawkit.models.backbone import from_pretrained_checked

        super().check_config(cfg, strategy)
        config = from_pretrained_checked(AutoConfig, cfg.model)
        if not_a_decoder(config):
            raise ConfigError(f"--task generation needs a decoder (a causal language model); {cfg.model} is a {config.model_type} "
                              "encoder; fix: --model smollm2-135m, or another decoder (Llama, Qwen2, GPT-2, ...)")
        if cfg.text_pair_col is not None:
            raise ConfigError("--text-pair-col is for sentence pairs; fix: put the whole prompt in one column (--prompt-col) "
                              "or use chat messages")
        if cfg.multi_label:
            raise ConfigError("--multi-label is for classification; fix: drop it for --task generation")

    def sample_texts(self, data: TaskData, limit: int = 500) -> list[str]:
        return [f"{e.prompt_text}\n{e.completion}" for e in data.train[:limit]]

    def task_settings(self, cfg: "TrainConfig", data: TaskData) -> dict[str, tuple[Any, str]]:
        """Tokens written per prompt when scoring: the longest training completion and a quarter more."""
        from thawkit.models.backbone import load_tokenizer

        tokenizer = load_tokenizer(cfg.tokenizer)
        longest = max((len(tokenizer(render(tokenizer, e.messages, e.completion)[1], add_special_tokens=False)["input_ids"])
                       for e in data.train[:5000]), default=16)
        value = min(MAX_NEW_TOKENS_CAP, max(16, math.ceil(longest * 1.25)))
        return {"max_new_tokens": (value, f"the longest training completion ({longest} tokens) + 25%, at least 16, "
                                          f"at most {MAX_NEW_TOKENS_CAP}")}

    # --- model ----------------------------------------------------------------------------------

    def build_model(self, cfg: "TrainConfig", data: TaskData, strategy: Any) -> nn.Module:
        from transformers import AutoModelForCausalLM

        return load_task_model(AutoModelForCausalLM, cfg.model)

    def encode(self, data: TaskData, split: str, tokenizer: Any, cfg: "TrainConfig") -> Any:
        from datasets import Dataset

        examples: list[Example] = data.split(split)
        rows, dropped, cut = [], 0, 0
        for example in examples:
            head, tail = example_tokens(tokenizer, example.messages, example.completion)
            row = fit_example(head, tail, cfg.max_length)
            if row is None:
                dropped += 1
                continue
            cut += len(head) + len(tail) > cfg.max_length
            rows.append(row)
        if not rows:
            raise DataError(f"{cfg.data if split == 'train' else split}: no {split} example has a completion token left after "
                            f"its prompt within --max-length {cfg.max_length}; fix: a larger --max-length, or shorter prompts")
        data.facts[f"{split}_examples_dropped"] = dropped  # the prompt alone filled --max-length
        data.facts[f"{split}_completions_cut"] = int(cut)
        data.facts["prompt_format"] = ("the tokenizer's chat template" if has_chat_template(tokenizer)
                                       else "plain: prompt, newline, completion, end-of-text token")
        return Dataset.from_list(rows)

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)  # pads labels with -100, on the right

    # --- scoring --------------------------------------------------------------------------------

    def logits_for_metrics(self) -> Callable[[Any, Any], Any]:
        return argmax_aligned

    def training_loss(self) -> Callable[..., Any]:
        return completion_loss

    def metric_function(self, data: TaskData, split: str) -> Callable[[Any], dict[str, float]]:
        return lambda prediction: {"token_accuracy": token_accuracy(_ids(prediction), prediction.label_ids)}

    def final_metrics(self, data: TaskData, split: str, output: Any) -> dict[str, Any]:
        loss = float(output.metrics.get(f"{split}_loss", float("nan")))
        return {"loss": loss, "perplexity": float(math.exp(min(loss, 50.0))),
                "token_accuracy": token_accuracy(_ids(output), output.label_ids),
                "num_examples": len(data.split(split))}

    def model_metrics(self, model: nn.Module, tokenizer: Any, data: TaskData, split: str, cfg: "TrainConfig") -> dict[str, Any]:
        """Answers generated (greedy) for the split's distinct prompts and scored against all their references;
        validation: the first ``--generation-samples`` prompts, test: every prompt."""
        _configure_generation(model, tokenizer)
        prompts, references = group_references(data.split(split))
        if split == "validation":
            prompts, references = prompts[: cfg.generation_samples], references[: cfg.generation_samples]
        if not prompts:
            return {}
        answers = generate_texts(model, tokenizer, [p.messages for p in prompts], generation_options(cfg.max_new_tokens),
                                 batch_size=min(cfg.eval_batch_size, 32))
        return {**text_scores(answers, references), "num_prompts": len(prompts),
                "num_references": sum(len(r) for r in references), "max_new_tokens": cfg.max_new_tokens,
                "samples": [{"prompt": p.prompt_text, "generated": a, "reference": r[0]}
                            for p, a, r in zip(prompts[:5], answers[:5], references[:5])]}

    def speed_probe(self, run: RunBase, data: TaskData) -> Callable[[int], None]:
        conversations = [e.messages for e in data.train[:256]]

        def infer(count: int) -> None:
            run.predict([c[-1]["content"] for c in conversations[:count]], max_new_tokens=16)  # type: ignore[call-arg]

        return infer

    # --- runs -----------------------------------------------------------------------------------

    def make_run(self, model: nn.Module, tokenizer: Any, data: TaskData, info: dict[str, Any], path: Path | None) -> RunBase:
        return GenerationRun(model, tokenizer, info, path)

    def load_run(self, path: Path, info: dict[str, Any], labels: dict[str, Any]) -> RunBase:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if (path / "adapter_config.json").exists():
            model = load_peft_run(load_task_model(AutoModelForCausalLM, info["config"]["model"]), path)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True)
        return GenerationRun(model.eval(), AutoTokenizer.from_pretrained(str(path)), info, path)

    def onnx_module(self, model: nn.Module) -> nn.Module:
        raise ConfigError("ONNX export of generation runs is not built (a decoder needs its key/value cache exported with it); "
                          "fix: serve the run folder with thawkit serve, vLLM or TGI, or export it with optimum-cli")

    # --- advice ---------------------------------------------------------------------------------

    def advisor_rules(self) -> list[Rule]:
        return [
            MEMORY_RULE,
            Rule("generation", lambda s: True, "lora",
                 "generation keeps the pretrained LM head: LoRA adapts every layer with ~1% of the parameters and saves "
                 "a small adapter that many can share one base (docs/generation.md has the measurements on E2E NLG)",
                 suggestions=("thawkit compare --task generation --strategies frozen,lora,full measures it on your data",)),
        ]


def _configure_generation(model: nn.Module, tokenizer: Any) -> None:
    """The model's generation config (saved with the run, read by pipelines, vLLM and TGI) stops where
    training taught it to and pads with the run's padding token."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.generation_config
    config.eos_token_id = stop_token_ids(tokenizer, base)
    config.pad_token_id = tokenizer.pad_token_id


def _ids(prediction: Any) -> np.ndarray:
    predictions = prediction.predictions
    return np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions)


class GenerationRun(RunBase):
    """A trained generator: ``predict(prompt)`` writes the answer (greedy unless beams or sampling)."""

    generates = True

    @property
    def max_new_tokens(self) -> int:
        return int(self.info["config"]["max_new_tokens"])  # resolved by the run's plan

    def _conversations(self, texts: list[Any]) -> list[list[dict[str, str]]]:
        return [list(t) if isinstance(t, list) else [{"role": "user", "content": str(t)}] for t in texts]

    def predict(self, texts: list[str] | str, text_pairs: Any = None, batch_size: int = 16, max_new_tokens: int | None = None,
                num_beams: int = 1, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                seed: int | None = None) -> list[dict[str, Any]]:
        """Each prompt (a text, or a list of chat messages) and the generated answer."""
        import torch

        if text_pairs is not None:
            raise ConfigError("a generation run reads one prompt per input; fix: drop --text-pair-col / pairs")
        single = isinstance(texts, str) or (isinstance(texts, list) and texts and isinstance(texts[0], dict))
        items = [texts] if single else list(texts)
        if seed is not None:
            torch.manual_seed(seed)
        options = generation_options(max_new_tokens or self.max_new_tokens, num_beams, do_sample, temperature, top_p)
        answers = generate_texts(self.model, self.tokenizer, self._conversations(items), options, batch_size)
        return [{"generated_text": answer} for answer in answers]

    def complete(self, conversations: list[list[dict[str, str]]], max_new_tokens: int | None = None, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None, stop: list[str] | None = None,
                 streamer: Any = None, adapter_names: list[str] | None = None) -> list[Any]:
        """Answers with their token counts and why each ended (``thawkit serve``'s OpenAI endpoints);
        ``adapter_names``: the LoRA adapter of the shared base that writes each answer."""
        import torch

        from thawkit.tasks.generation_text import generate_answers

        if seed is not None:
            torch.manual_seed(seed)
        options = generation_options(max_new_tokens or self.max_new_tokens, 1, do_sample, temperature, top_p)
        return generate_answers(self.model, self.tokenizer, conversations, options, 1 if streamer is not None else 16, streamer,
                                stop=stop, adapter_names=adapter_names)

    def prediction_inputs(self, path: Path, text_col: str | None, text_pair_col: str | None) -> tuple[list[Any], list[str] | None]:
        if text_pair_col is not None:
            raise ConfigError("a generation run reads one prompt per input; fix: drop --text-pair-col")
        return read_prompts(path, text_col), None

    def stream(self, prompt: str | list[dict[str, str]], max_new_tokens: int | None = None, num_beams: int = 1,
               do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None) -> Any:
        """The answer's text as it is generated (an iterator of pieces)."""
        import threading

        from transformers import TextIteratorStreamer

        if num_beams > 1:
            raise ConfigError("streaming writes one answer token by token; beam search keeps several; fix: drop --num-beams "
                              "or --stream")
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        worker = threading.Thread(target=self.complete, args=(self._conversations([prompt]), max_new_tokens, do_sample, temperature,
                                                              top_p, seed, None, streamer), daemon=True)
        worker.start()
        yield from streamer
        worker.join()

    def evaluate(self, data: str | Path, text_col: str | None = None, label_col: str | None = None, **_: Any) -> dict[str, Any]:
        examples, _ = read_generation_file(data, text_col, label_col)
        prompts, references = group_references(examples)
        answers = generate_texts(self.model, self.tokenizer, [p.messages for p in prompts],
                                 generation_options(self.max_new_tokens))
        return {**text_scores(answers, references), "num_prompts": len(prompts), "num_references": len(examples)}

    def headline(self) -> str:
        v = self.metrics.get("validation", {})
        scored = f", BLEU {v['bleu']:.1f}, ROUGE-L {v['rouge_l']:.1f} on {v['num_prompts']} prompts" if "bleu" in v else ""
        return (f"generation {self.info.get('strategy')}: validation loss {v.get('loss', float('nan')):.4f} "
                f"(perplexity {v.get('perplexity', float('nan')):.2f}){scored}")
