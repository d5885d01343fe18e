"""Expected time and memory of a strategy on this hardware, from a short timed probe."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch


FEATURE_HEAD_FIT_SECONDS = 2.5
# Every run: load the model, tokenize, the final evaluation, write the run folder (about 1 s for MiniLM here);
# it also keeps the estimate of a run on a few dozen examples above zero.
RUN_FIXED_SECONDS = 1.0
PROBE_REPEATS = 3


@dataclass
class Throughput:
    train_seconds_per_example: float  # forward + backward, full fine-tuning
    forward_seconds_per_example: float  # inference-mode forward
    optimizer_step_seconds: float = 0.0  # one AdamW step over every parameter


def probe_throughput(model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 16) -> Throughput:
    """Time one forward+backward and one inference forward on a real batch (after a warm-up), in the
    arithmetic training will use (bf16 autocast where the hardware is fast at it), and scale to the
    data's mean length: training batches are grouped by length, so cost follows the real tokens."""
    from thawkit.models.hardware import fast_bf16_available

    bf16 = fast_bf16_available()
    batch = tokenizer(texts[:batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    n, padded_length = batch["input_ids"].shape
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    mean_length = sum(lengths) / max(len(lengths), 1)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, weight_decay=0.0)  # lr 0: the probe must not change the weights
    device_type = "cpu" if not torch.cuda.is_available() else "cuda"
    # One warm-up, then the fastest of PROBE_REPEATS: a one-off stall (another process taking the cores
    # for a moment) inflated a single timing many-fold; the minimum is what the hardware can do.
    train_times, step_times = [], []
    for _ in range(1 + PROBE_REPEATS):
        started = time.perf_counter()
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            output = model(**batch)
        output.last_hidden_state.float().pow(2).mean().backward()
        stepped = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_times.append(stepped - started)
        step_times.append(time.perf_counter() - stepped)
    model.eval()
    forward_times = []
    with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        for _ in range(1 + PROBE_REPEATS):
            started = time.perf_counter()
            model(**batch)
            forward_times.append(time.perf_counter() - started)
    train, step, forward = min(train_times[1:]), min(step_times[1:]), min(forward_times[1:])
    per_token = 1.0 / (n * padded_length)
    return Throughput(train_seconds_per_example=train * per_token * mean_length,
                      forward_seconds_per_example=forward * per_token * mean_length, optimizer_step_seconds=step)


def busy_machine_note(load_average: float | None = None, cores: int | None = None) -> str | None:
    """A warning when other work holds the cores: the probe then times a shared machine, and the
    estimates assume the load stays (a run on a quiet machine is faster)."""
    import os

    if load_average is None:
        try:
            load_average = os.getloadavg()[0]
        except (AttributeError, OSError):  # not available on every platform
            return None
    cores = cores or os.cpu_count() or 1
    # More runnable work than cores, beyond one for this process: the probe's timings are shared.
    if torch.cuda.is_available() or load_average < cores + 1:
        return None
    return (f"the machine is busy (load average {load_average:.1f} on {cores} cores): the time estimates were measured "
            "under that load and assume it stays; rerun advise on a quiet machine for quiet-machine times")


def expected_seconds(strategy: str, throughput: Throughput, num_examples: int, epochs: float, num_validation: int = 0,
                     batch_size: int = 32) -> float:
    """A strategy's facts (``epoch_cost`` relative to full fine-tuning, ``cached_pass``,
    ``trainable_share``) times the probe: training passes, an optimizer step per batch over what
    trains, and an evaluation of the validation split per epoch (checked against measured runs in
    benchmarks/size_sweep.py; docs/advisor.md)."""
    import math

    from thawkit.strategies import get_strategy_class

    facts = get_strategy_class(strategy)
    one_pass = throughput.forward_seconds_per_example * num_examples
    validation_pass = throughput.forward_seconds_per_example * num_validation
    phase = facts().contrastive_phase()
    if phase is not None:
        # Few-shot: contrastive passes over the examples (every layer trains), then the closed-form head;
        # all of it again on training + validation when the strategy refits.
        body = phase.epochs * throughput.train_seconds_per_example * num_examples
        once = body + one_pass + validation_pass + FEATURE_HEAD_FIT_SECONDS
        again = body * (num_examples + num_validation) / max(num_examples, 1) + one_pass if facts().refits_on_validation else 0.0
        return RUN_FIXED_SECONDS + once + again
    if facts.epoch_cost == 0:
        # One pass to cache the features, then the head: logistic regression and an MLP fitted on the
        # vectors, about 2-3 s whatever the size (benchmarks/advisor_time.py, docs/advisor.md).
        return RUN_FIXED_SECONDS + one_pass + validation_pass + FEATURE_HEAD_FIT_SECONDS
    cached_pass = one_pass if facts.cached_pass else 0.0
    steps = math.ceil(num_examples / batch_size) * epochs
    return (RUN_FIXED_SECONDS + cached_pass + facts.epoch_cost * throughput.train_seconds_per_example * num_examples * epochs
            + steps * throughput.optimizer_step_seconds * max(facts.trainable_share, 0.02) + validation_pass * epochs)


def expected_memory_gb(strategy: str, num_params: int, hidden: int, layers: int, batch_size: int, seq_len: int) -> float:
    """Weights, gradients and AdamW state of what trains, plus activations of the trained layers."""
    from thawkit.strategies import get_strategy_class

    facts = get_strategy_class(strategy)
    trainable_share = facts.trainable_share
    weights = num_params * 4
    optimizer = num_params * trainable_share * 12  # gradient + two AdamW moments, fp32
    trained_layers = layers * (1.0 if facts.trains_all_activations else trainable_share)
    activations = batch_size * seq_len * hidden * trained_layers * 4 * 20
    return round((weights + optimizer + activations) / 2**30 + 0.5, 2)  # + ~0.5 GB for the framework
