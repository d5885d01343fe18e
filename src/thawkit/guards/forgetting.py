"""Forgetting meter: how far the fine-tuned encoder drifted from the pretrained one.

Per block (embeddings, each layer), linear CKA (Kornblith et al. 2019) between the pretrained and
the fine-tuned token representations of a fixed general-English probe set; 1.0 = the same
representation up to rotation and scale. Where the checkpoint has a trained masked-LM head, also the
masked-LM loss on the probe set before and after (the fine-tuned encoder under the pretrained head).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from thawkit.models.layout import EMBEDDINGS, build_layout, layer_block


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA between (n, d1) and (n, d2) representations of the same n items."""
    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    cross = (y.T @ x).norm() ** 2
    denominator = (x.T @ x).norm() * (y.T @ y).norm()
    return float(cross / denominator) if denominator > 0 else 1.0


@torch.inference_mode()
def block_representations(model: nn.Module, tokenizer: Any, texts: list[str], max_length: int = 64) -> dict[str, torch.Tensor]:
    """Real-token outputs of the embeddings and of every encoder layer: block -> (tokens, hidden)."""
    layout = build_layout(model)
    modules = {EMBEDDINGS: layout.embeddings_module, **{layer_block(i): m for i, m in enumerate(layout.layer_modules)}}
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    masks: list[torch.Tensor] = []

    def hook_for(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            captured[name].append((output[0] if isinstance(output, (tuple, list)) else output).float())

        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in modules.items() if m is not None]
    # Models that wrap an encoder with their own inputs (a bi-encoder, a pooled head) run it directly.
    encoder = getattr(model, "backbone", None) or model
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(texts), 32):
            batch = tokenizer(texts[start : start + 32], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            device = next(model.parameters()).device
            encoder(**{k: v.to(device) for k, v in batch.items()})
            masks.append(batch["attention_mask"].bool())
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {
        name: torch.cat([states[mask.to(states.device)].cpu() for states, mask in zip(chunks, masks)])
        for name, chunks in captured.items()
        if chunks
    }


@torch.inference_mode()
def masked_lm_loss(mlm: nn.Module, tokenizer: Any, texts: list[str], seed: int = 0) -> float:
    """Masked-LM loss with 15% of tokens masked, the same positions every call (fixed seed)."""
    generator = torch.Generator().manual_seed(seed)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    labels = batch["input_ids"].clone()
    special = torch.zeros_like(labels, dtype=torch.bool)
    for token_id in tokenizer.all_special_ids:
        special |= labels == token_id
    chosen = (torch.rand(labels.shape, generator=generator) < 0.15) & ~special
    labels[~chosen] = -100
    inputs = batch["input_ids"].clone()
    inputs[chosen] = tokenizer.mask_token_id
    mlm.eval()
    return float(mlm(input_ids=inputs, attention_mask=batch["attention_mask"], labels=labels).loss)


def measure_forgetting(
    trained: nn.Module, pretrained: nn.Module, tokenizer: Any, texts: list[str], pretrained_mlm: nn.Module | None = None
) -> dict[str, Any]:
    after = block_representations(trained, tokenizer, texts)
    before = block_representations(pretrained, tokenizer, texts)
    cka = {name: round(linear_cka(before[name], after[name]), 6) for name in before if name in after}
    result: dict[str, Any] = {
        "probe_sentences": len(texts),
        "cka": cka,
        "mean_cka": round(sum(cka.values()) / max(len(cka), 1), 6),
        "min_cka": round(min(cka.values()), 6) if cka else None,
    }
    result["drift"] = round(1.0 - result["mean_cka"], 6)
    if pretrained_mlm is not None:
        result["mlm_loss_before"] = masked_lm_loss(pretrained_mlm, tokenizer, texts)
        trained_state = encoder_state(trained)
        target = pretrained_mlm.base_model
        missing = target.load_state_dict(trained_state, strict=False)
        if not missing.missing_keys or all("pooler" in k for k in missing.missing_keys):
            result["mlm_loss_after"] = masked_lm_loss(pretrained_mlm, tokenizer, texts)
    return result


def encoder_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The fine-tuned backbone's weights, named as in a bare AutoModel (LoRA merged in a copy)."""
    import copy

    inner = model
    if hasattr(inner, "merge_and_unload") and hasattr(inner, "peft_config"):
        inner = copy.deepcopy(inner).merge_and_unload()
    backbone = getattr(inner, "backbone", None) or inner.base_model
    return {k: v.detach() for k, v in backbone.state_dict().items()}


def unchanged_encoder(model: nn.Module) -> dict[str, Any]:
    """No encoder parameter trained: the representation is the pretrained one, CKA 1.0 by definition."""
    layout = build_layout(model)
    cka = {EMBEDDINGS: 1.0, **{layer_block(i): 1.0 for i in range(layout.num_layers)}}
    return {"probe_sentences": 0, "cka": cka, "mean_cka": 1.0, "min_cka": 1.0, "drift": 0.0,
            "measured": False, "reason": "no encoder parameter trained"}
