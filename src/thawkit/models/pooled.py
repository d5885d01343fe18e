"""Feature-extraction classifiers: a frozen encoder, a pooling of its last layer, a small head.

The default ``frozen`` run keeps the architecture's own head (pooler + classifier on ``[CLS]``) and
saves a standard Hugging Face model. With ``pooling: mean`` or ``head: mlp | logreg`` (and every
``fewshot`` run) the run saves this module instead: ``backbone/`` (an ``AutoModel`` folder, which is
also a sentence-transformers folder — tokenizer, pooling and Normalize modules beside it — when the
base was one and the head reads its own pooling and normalisation, as every ``fewshot`` run does) plus ``thawkit_head.json`` and ``thawkit_head.safetensors``. A
scikit-learn logistic regression is a linear layer on the pooled features, so it is stored as one
(its softmax, or per-label sigmoid for multi-label, gives the same probabilities).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    import numpy as np

HEAD_CONFIG = "thawkit_head.json"
HEAD_WEIGHTS = "thawkit_head.safetensors"


def pool(states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(batch, tokens, hidden) -> (batch, hidden): the first token, or the mean or max over real tokens."""
    if pooling == "cls":
        return states[:, 0]
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    if pooling == "max":  # padding can never be the maximum
        return states.masked_fill(mask == 0, torch.finfo(states.dtype).min).max(1).values
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def head_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over classes; multi-label (labels (batch, classes) of 0/1): per-label binary."""
    if labels.dim() == 2:
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
    return nn.functional.cross_entropy(logits, labels.long())


def build_head(kind: str, hidden: int, num_labels: int, mlp_hidden: int, dropout: float) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, mlp_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_hidden, num_labels))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_labels))


class PooledHeadClassifier(nn.Module):
    """``backbone`` (any AutoModel encoder) -> pooling -> ``head``; returns ``.logits`` and ``.loss``."""

    def __init__(self, backbone: nn.Module, num_labels: int, pooling: str, head: str, problem_type: str,
                 id2label: dict[int, str], mlp_hidden: int = 256, dropout: float = 0.1, normalize: bool = False,
                 sentence_transformers_source: str | None = None) -> None:
        super().__init__()
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None  # the head reads pooled token states; an unused pooler would count as trainable
        self.backbone = backbone
        self.config = backbone.config  # the Trainer and thawkit's layout read model.config
        self.pooling = pooling
        self.head_kind = head
        self.num_labels = num_labels
        self.problem_type = problem_type
        self.id2label = {int(k): str(v) for k, v in id2label.items()}
        self.mlp_hidden = mlp_hidden
        self.dropout = dropout
        self.normalize = normalize  # pooled features L2-normalised before the head (a sentence-transformers Normalize)
        # The sentence-transformers folder the backbone came from: its pooling modules are saved with the backbone.
        self.sentence_transformers_source = sentence_transformers_source
        hidden = int(getattr(backbone.config, "hidden_size", None) or backbone.config.dim)
        self.head = build_head(head, hidden, num_labels, mlp_hidden, dropout)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None, **kwargs: Any) -> Any:
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
        if attention_mask is None:
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        outputs = self.backbone(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs)
        logits = self.head(self.features(outputs.last_hidden_state, attention_mask))
        loss = head_loss(logits, labels) if labels is not None else None
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(loss=loss, logits=logits)

    def features(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, hidden) token states -> (batch, hidden) what the head reads."""
        pooled = pool(states, attention_mask, self.pooling)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def head_config(self) -> dict[str, Any]:
        return {
            "pooling": self.pooling, "head": self.head_kind, "num_labels": self.num_labels,
            "problem_type": self.problem_type, "id2label": self.id2label, "mlp_hidden": self.mlp_hidden,
            "dropout": self.dropout, "normalize": self.normalize,
        }

    def save_pretrained(self, path: str | Path, max_length: int | None = None, **kwargs: Any) -> None:
        """``backbone/`` plus the head; a backbone from a sentence-transformers checkpoint is saved as
        one (tokenizer, pooling, Normalize; ``max_length``: the length it was trained at), so
        ``SentenceTransformer(path / "backbone")`` embeds as the run's body does."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(str(path / "backbone"))
        if self.sentence_transformers_source is not None:
            from thawkit.models.backbone import copy_sentence_transformers_modules, load_tokenizer

            source = Path(self.sentence_transformers_source)
            tokenizer = load_tokenizer(str(source))
            if max_length is not None:
                tokenizer.model_max_length = int(max_length)
            tokenizer.save_pretrained(str(path / "backbone"))
            copy_sentence_transformers_modules(source, path / "backbone", max_length, normalize=self.normalize)
        (path / HEAD_CONFIG).write_text(json.dumps(self.head_config(), indent=2) + "\n")
        save_file({k: v.detach().contiguous() for k, v in self.head.state_dict().items()}, str(path / HEAD_WEIGHTS))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "PooledHeadClassifier":
        from safetensors.torch import load_file
        from transformers import AutoModel

        path = Path(path)
        config = json.loads((path / HEAD_CONFIG).read_text())
        backbone = AutoModel.from_pretrained(str(path / "backbone"), use_safetensors=True)
        model = cls(backbone, config["num_labels"], config["pooling"], config["head"], config["problem_type"],
                    config["id2label"], config["mlp_hidden"], config["dropout"], bool(config.get("normalize", False)))
        model.head.load_state_dict(load_file(str(path / HEAD_WEIGHTS)))
        return model.eval()

    def linear_layer(self) -> nn.Linear:
        return self.head[-1]


def load_pooled_classifier(name: str, num_labels: int, id2label: dict[int, str], problem_type: str,
                           pooling: str, head: str, mlp_hidden: int, dropout: float, normalize: bool = False) -> PooledHeadClassifier:
    from transformers import AutoModel

    from thawkit.models.backbone import checkpoint_pooling, from_pretrained_checked, resolve_model_path

    backbone = from_pretrained_checked(AutoModel, name)
    # The body is saved as a sentence-transformers folder only where that folder embeds exactly what the
    # head reads: the checkpoint's own pooling, its Normalize kept where the head reads normalised
    # features and left out where it does not (a frozen head on the plain mean-pooled embeddings).
    checkpoint = checkpoint_pooling(name)
    same = checkpoint is not None and checkpoint.mode == pooling and (checkpoint.normalize or not normalize)
    return PooledHeadClassifier(backbone, num_labels, pooling, head, problem_type, id2label, mlp_hidden, dropout,
                                normalize, resolve_model_path(name) if same else None)


def fit_logistic_regression(model: PooledHeadClassifier, features: torch.Tensor, labels: torch.Tensor, seed: int, c: float = 1.0) -> None:
    """Fit scikit-learn's logistic regression on pooled features and load it into the linear head;
    multi-label (labels a (n, classes) 0/1 matrix): one binary regression per label, whose sigmoid
    is the label's probability."""
    from sklearn.linear_model import LogisticRegression

    if labels.dim() == 2:
        _fit_one_vs_rest(model, features, labels, seed, c)
        return
    classifier = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    classifier.fit(features.numpy(), labels.numpy())
    coef = torch.tensor(classifier.coef_, dtype=torch.float32)  # (classes or 1, hidden)
    intercept = torch.tensor(classifier.intercept_, dtype=torch.float32)
    if coef.shape[0] == 1:  # binary: sklearn scores class 1 against class 0
        coef = torch.cat([torch.zeros_like(coef), coef])
        intercept = torch.cat([torch.zeros_like(intercept), intercept])
    # Classes sklearn saw, in its order, mapped onto the label ids.
    weight = torch.zeros(model.num_labels, coef.shape[1])
    bias = torch.full((model.num_labels,), -1e4)
    for row, label_id in enumerate(classifier.classes_):
        weight[int(label_id)] = coef[row]
        bias[int(label_id)] = intercept[row]
    with torch.no_grad():
        model.linear_layer().weight.copy_(weight)
        model.linear_layer().bias.copy_(bias)


def _fit_one_vs_rest(model: PooledHeadClassifier, features: torch.Tensor, labels: torch.Tensor, seed: int, c: float) -> None:
    """Multi-label: label c's logit is its own binary regression's; a label always (never) present in
    the training data gets a constant logit of +-10 (sklearn needs both classes to fit)."""
    from sklearn.linear_model import LogisticRegression

    weight = torch.zeros(model.num_labels, features.shape[1])
    bias = torch.zeros(model.num_labels)
    x = features.numpy()
    for label in range(model.num_labels):
        y = labels[:, label].numpy() > 0.5
        if y.all() or not y.any():
            bias[label] = 10.0 if y.all() else -10.0
            continue
        classifier = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, y)
        weight[label] = torch.tensor(classifier.coef_[0], dtype=torch.float32)
        bias[label] = float(classifier.intercept_[0])
    with torch.no_grad():
        model.linear_layer().weight.copy_(weight)
        model.linear_layer().bias.copy_(bias)


def train_mlp_head(model: PooledHeadClassifier, features: torch.Tensor, labels: torch.Tensor, val_features: torch.Tensor,
                   score: Any, seed: int, epochs: int = 40, patience: int = 5, lr: float = 1e-3) -> None:
    """Train the MLP head on pooled features held in memory (mini-batches of vectors, no encoder
    passes); keep the epoch with the best validation ``score(logits)``."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.head = build_head("mlp", features.shape[1], model.num_labels, model.mlp_hidden, model.dropout)
    model.head_kind = "mlp"
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=lr, weight_decay=0.01)
    best, best_state, waited = float("-inf"), None, 0
    for _ in range(epochs):
        model.head.train()
        for batch in torch.randperm(len(features), generator=generator).split(64):
            loss = head_loss(model.head(features[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.head.eval()
        with torch.no_grad():
            value = score(model.head(val_features))
        if value > best + 1e-9:
            best, best_state, waited = value, {k: v.clone() for k, v in model.head.state_dict().items()}, 0
        else:
            waited += 1
            if waited >= patience:
                break
    if best_state is not None:
        model.head.load_state_dict(best_state)
    model.head.eval()


class SentenceEncoder:
    """Texts -> L2-normalised sentence embeddings with a checkpoint's own pooling (mean where it
    declares none), in length-sorted batches, in eval mode."""

    def __init__(self, name: str, max_length: int = 128, batch_size: int = 64) -> None:
        from transformers import AutoModel

        from thawkit.models.backbone import checkpoint_pooling, from_pretrained_checked, load_tokenizer

        checkpoint = checkpoint_pooling(name)
        self.pooling = checkpoint.mode if checkpoint is not None else "mean"
        self.model = from_pretrained_checked(AutoModel, name).eval()
        self.tokenizer = load_tokenizer(name)
        self.max_length, self.batch_size = max_length, batch_size

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> "np.ndarray":
        return embed_in_length_order(texts, self.batch_size, lambda batch: self._batch(batch))

    def _batch(self, texts: list[str]) -> torch.Tensor:
        inputs = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        states = self.model(**inputs).last_hidden_state
        return nn.functional.normalize(pool(states, inputs["attention_mask"], self.pooling), dim=-1)


def embed_in_length_order(texts: list[str], batch_size: int, embed: Any) -> "np.ndarray":
    """``embed(batch of texts) -> (batch, hidden)`` over ``texts`` in batches of similar length (little
    padding); rows back in the texts' order, as float32 numpy."""
    import numpy as np

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rows: list[torch.Tensor] = []
    for start in range(0, len(order), batch_size):
        rows.append(embed([texts[i] for i in order[start : start + batch_size]]).float().cpu())
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    stacked = torch.cat(rows).numpy()
    result = np.empty_like(stacked)
    result[order] = stacked
    return result


def sentence_embedder(run: Any, model: str | None, max_length: int, batch_size: int) -> tuple[Any, str]:
    """A function texts -> (n, hidden) normalised embeddings, and what it is."""
    body = getattr(getattr(run, "model", None), "features", None) if model is None else None
    if body is not None:  # the run's own (adapted) body and pooling
        return (lambda texts: run.embeddings(texts)), f"the run's body ({run.info.get('strategy')})"
    name = model or (run.info["config"]["model"] if run is not None else "minilm-l6")
    encoder = SentenceEncoder(name, max_length, batch_size)
    return encoder.encode, f"{name} ({encoder.pooling} pooling)"
