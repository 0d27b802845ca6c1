"""A Hugging Face encoder with a pooled linear head; saves itself as a folder.

Layout of a saved classifier::

    classifier.json      ClassifierConfig (labels, pooling, prefix, max length)
    head.safetensors     the linear head (and the lexical branch's table, if any)
    encoder/             a standard Hugging Face model directory (config, weights, tokenizer)
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer

from inference.lexical import LexicalSpec, batch_features


@contextmanager
def attention_as(encoder, implementation: str):
    """Run a Hugging Face ``encoder`` with attention ``implementation`` ("eager", "sdpa") inside the
    block, its own outside it (the weights are the same; only the computation's form changes)."""
    before = encoder.config._attn_implementation
    if implementation != before:
        encoder.set_attn_implementation(implementation)
    try:
        yield encoder
    finally:
        if encoder.config._attn_implementation != before:
            encoder.set_attn_implementation(before)


@dataclass
class ClassifierConfig:
    labels: tuple[str, ...]
    pooling: str = "mean"   # "mean" over the attention mask (how e5 was trained) or "cls"
    dropout: float = 0.1
    text_prefix: str = ""   # e5 expects "query: "
    max_length: int = 128
    lexical: dict | None = None  # inference.lexical.LexicalSpec fields: a hashed n-gram branch joins the logits

    def __post_init__(self):
        self.labels = tuple(self.labels)
        if self.lexical is not None:
            LexicalSpec(**self.lexical)  # validates
        if self.pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {self.pooling!r}")


class EncoderClassifier(nn.Module):
    def __init__(self, encoder, config: ClassifierConfig):
        super().__init__()
        self.encoder, self.config = encoder, config
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(encoder.config.hidden_size, len(config.labels))
        # the lexical branch: hashed char/word n-grams -> per-class weights added to the logits; starts
        # at zero, so a student begins as its transformer alone
        self.lexical = None
        if config.lexical is not None:
            self.lexical = nn.EmbeddingBag(LexicalSpec(**config.lexical).buckets, len(config.labels), mode="sum")
            nn.init.zeros_(self.lexical.weight)

    def lexical_inputs(self, texts: list[str]) -> tuple[torch.Tensor, ...] | None:
        """The lexical branch's input for ``texts`` (None without a branch)."""
        if self.lexical is None:
            return None
        return tuple(torch.from_numpy(a) for a in batch_features(list(texts), LexicalSpec(**self.config.lexical)))

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, return_pooled: bool = False,
                return_layers: bool = False, lexical: tuple[torch.Tensor, ...] | None = None,
                return_tokens: bool = False):
        """Logits; with ``return_pooled`` also the pooled features, with ``return_layers`` also every
        layer's output pooled the same way, [batch, layers, hidden] (both for distillation).
        ``lexical``: ``lexical_inputs(texts)`` of the batch; without it the logits are the
        transformer's alone (that part is what the ONNX graph holds). ``return_tokens``: also every
        layer's token-level output, a tuple of [batch, tokens, hidden] (token-level distillation)."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                           output_hidden_states=return_layers or return_tokens)
        pooled = self.pool(out.last_hidden_state, attention_mask)
        logits = self.head(self.dropout(pooled))
        if lexical is not None and self.lexical is not None:
            ids, offsets, weights = lexical
            logits = logits + self.lexical(ids, offsets, per_sample_weights=weights).to(logits.dtype)
        extra = []
        if return_pooled:
            extra.append(pooled)
        if return_layers:
            extra.append(torch.stack([self.pool(h, attention_mask) for h in out.hidden_states[1:]], 1))
        if return_tokens:
            extra.append(out.hidden_states[1:])
        return (logits, *extra) if extra else logits

    def save(self, path: Path, tokenizer) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(path / "encoder")
        tokenizer.save_pretrained(path / "encoder")
        state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        if self.lexical is not None:
            state["lexical.weight"] = self.lexical.weight.detach().cpu().contiguous()
        save_file(state, str(path / "head.safetensors"))
        (path / "classifier.json").write_text(json.dumps(asdict(self.config), indent=2, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: Path):
        """Returns (classifier, tokenizer)."""
        path = Path(path)
        cfg_file = path / "classifier.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{path} is not a saved classifier: {cfg_file.name} is missing")
        config = ClassifierConfig(**json.loads(cfg_file.read_text()))
        encoder = AutoModel.from_pretrained(path / "encoder")
        model = cls(encoder, config)
        state = load_file(str(path / "head.safetensors"))
        if model.lexical is not None:
            model.lexical.weight.data.copy_(state.pop("lexical.weight"))
        model.head.load_state_dict(state)
        return model, AutoTokenizer.from_pretrained(path / "encoder")
