"""Students cut from the teacher: structured pruning that keeps the teacher's weights.

Minitron-style width pruning (arXiv 2407.14679) plus depth pruning of the top layers ("Poor Man's
BERT"): rank hidden channels, attention heads (and the dimensions inside a head) and FFN neurons
by their mean activation magnitude over a few thousand training posts (``importance``), keep the
top ones and the bottom ``layers`` layers, and slice the teacher's matrices accordingly
(``prune_encoder``); the kept vocabulary's embedding rows are sliced to the kept channels.

Shapes follow Hugging Face ``BertConfig``: a student of hidden size H with h heads has head size
H / h. A kept head of the teacher (head size 64 for e5-small) keeps its H / h most important
query/key dimensions and value dimensions; queries are scaled by sqrt(d / d_teacher) so that the
attention scores keep the teacher's 1 / sqrt(d_teacher) scale. With nothing removed the student
*is* the teacher (same logits; tested).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneShape:
    """What a pruned student keeps of its teacher."""
    layers: int       # the bottom ``layers`` encoder layers
    hidden: int       # kept hidden (residual-stream) channels
    heads: int        # kept attention heads per layer; head size = hidden / heads
    ffn: int          # kept FFN neurons per layer

    def check(self, teacher_config) -> None:
        tc = teacher_config
        t_head = tc.hidden_size // tc.num_attention_heads
        problems = []
        if not 1 <= self.layers <= tc.num_hidden_layers:
            problems.append(f"layers={self.layers} (teacher has {tc.num_hidden_layers})")
        if not 1 <= self.hidden <= tc.hidden_size:
            problems.append(f"hidden={self.hidden} (teacher has {tc.hidden_size})")
        if not 1 <= self.heads <= tc.num_attention_heads or self.hidden % self.heads:
            problems.append(f"heads={self.heads} (teacher has {tc.num_attention_heads}; must divide hidden)")
        elif self.hidden // self.heads > t_head:
            problems.append(f"head size {self.hidden // self.heads} > the teacher's {t_head}")
        if not 1 <= self.ffn <= tc.intermediate_size:
            problems.append(f"ffn={self.ffn} (teacher has {tc.intermediate_size})")
        if problems:
            raise ValueError("cannot cut this student from the teacher: " + "; ".join(problems))


@torch.no_grad()
def importance(model, batches) -> dict[str, np.ndarray]:
    """Mean absolute activations of a teacher ``EncoderClassifier`` (BERT encoder) over the
    non-padding tokens of ``batches`` (an iterable of ``(input_ids, attention_mask)``):

    - ``channels`` [hidden]: of the residual stream (every LayerNorm output, summed),
    - ``heads`` [layers, heads]: L2 norm of each head's context vector,
    - ``qk`` [layers, hidden]: |q_d * k_d| per query/key dimension (same token),
    - ``v`` [layers, hidden]: |context_d| x the norm of its output-projection column,
    - ``ffn`` [layers, intermediate]: |GELU output| per neuron.
    """
    enc = model.encoder
    _require_bert(enc)
    cfg = enc.config
    n_layers, width, n_heads = cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads
    acc = {"channels": torch.zeros(width, dtype=torch.float64),
           "heads": torch.zeros(n_layers, n_heads, dtype=torch.float64),
           "qk": torch.zeros(n_layers, width, dtype=torch.float64),
           "v": torch.zeros(n_layers, width, dtype=torch.float64),
           "ffn": torch.zeros(n_layers, cfg.intermediate_size, dtype=torch.float64)}
    state: dict = {}

    def masked_mean_abs(x):  # [B, T, D] -> [D] summed over kept tokens (normalised at the end)
        m = state["mask"]
        return (x.float().abs() * m).sum((0, 1)).double()

    def channel_hook(mod, i, o):  # a forward hook must return None, or it replaces the output
        acc["channels"].add_(masked_mean_abs(o))

    hooks = []
    for ln in [enc.embeddings.LayerNorm] + [m for layer in enc.encoder.layer
                                            for m in (layer.attention.output.LayerNorm, layer.output.LayerNorm)]:
        hooks.append(ln.register_forward_hook(channel_hook))
    for li, layer in enumerate(enc.encoder.layer):
        att = layer.attention
        q_store: dict = {}

        def q_hook(mod, i, o, q_store=q_store):
            q_store["q"] = o

        def k_hook(mod, i, o, li=li, q_store=q_store):
            acc["qk"][li].add_(masked_mean_abs(q_store.pop("q") * o))

        def ctx_hook(mod, inputs, o, li=li, att=att):  # input of attention.output.dense = the heads' context
            ctx = inputs[0]
            b, t, _ = ctx.shape
            m = state["mask"]
            per_head = ctx.float().reshape(b, t, n_heads, -1).norm(dim=-1) * m
            acc["heads"][li].add_(per_head.sum((0, 1)).double())
            col_norm = att.output.dense.weight.float().norm(dim=0).double()
            acc["v"][li].add_(masked_mean_abs(ctx) * col_norm)

        def ffn_hook(mod, i, o, li=li):
            acc["ffn"][li].add_(masked_mean_abs(o))

        hooks += [att.self.query.register_forward_hook(q_hook), att.self.key.register_forward_hook(k_hook),
                  att.output.dense.register_forward_pre_hook(lambda mod, inputs, h=ctx_hook: h(mod, inputs, None) and None),
                  layer.intermediate.register_forward_hook(ffn_hook)]
    tokens = 0
    model.eval()
    try:
        for ids, mask in batches:
            state["mask"] = mask.unsqueeze(-1).float()
            tokens += int(mask.sum())
            model(ids, mask)
    finally:
        for h in hooks:
            h.remove()
    if not tokens:
        raise ValueError("importance: no tokens seen; pass at least one non-empty batch")
    return {k: (v / tokens).numpy() for k, v in acc.items()}


def _require_bert(encoder) -> None:
    if getattr(encoder.config, "model_type", None) != "bert" or not hasattr(encoder, "encoder"):
        raise ValueError(f"pruned students need a BERT-architecture teacher (e5-small, rubert-tiny2, ...); this "
                         f"teacher is {getattr(encoder.config, 'model_type', type(encoder).__name__)!r}: "
                         f"use init 'teacher' or 'random'")


def _top(scores: np.ndarray, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores, in ascending index order (ties: lower index first)."""
    order = np.argsort(-np.asarray(scores), kind="stable")[:k]
    return torch.as_tensor(np.sort(order), dtype=torch.long)


@torch.no_grad()
def prune_encoder(teacher_encoder, scores: dict[str, np.ndarray], shape: PruneShape, vocab_ids: np.ndarray,
                  max_length: int, pad_id: int, dropout: float | None = None,
                  attention_dropout: float | None = None):
    """A new ``BertModel`` cut from ``teacher_encoder``: the bottom ``shape.layers`` layers, the
    top channels / heads / head dimensions / FFN neurons by ``scores`` (from ``importance``) and
    the embedding rows ``vocab_ids`` (ids in the teacher's vocabulary, in the student's order;
    ``pad_id`` is the student's own padding id); ``dropout`` / ``attention_dropout``: the student's
    hidden and attention-probability dropout (default: the teacher's).
    Returns ``(encoder, kept_channels)``; the classifier head is sliced with ``kept_channels``."""
    from transformers import BertConfig, BertModel

    _require_bert(teacher_encoder)
    tc = teacher_encoder.config
    shape.check(tc)
    t_head = tc.hidden_size // tc.num_attention_heads
    d = shape.hidden // shape.heads
    drop = tc.hidden_dropout_prob if dropout is None else dropout
    attn_drop = tc.attention_probs_dropout_prob if attention_dropout is None else attention_dropout
    cfg = BertConfig(vocab_size=len(vocab_ids), hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                     num_attention_heads=shape.heads, intermediate_size=shape.ffn,
                     max_position_embeddings=min(max_length, tc.max_position_embeddings), type_vocab_size=1,
                     layer_norm_eps=tc.layer_norm_eps, hidden_act=tc.hidden_act, pad_token_id=pad_id,
                     hidden_dropout_prob=drop, attention_probs_dropout_prob=attn_drop)
    student = BertModel(cfg, add_pooling_layer=False)
    ch = _top(scores["channels"], shape.hidden)
    te, se = teacher_encoder.embeddings, student.embeddings
    rows = torch.as_tensor(np.asarray(vocab_ids), dtype=torch.long)
    se.word_embeddings.weight.copy_(te.word_embeddings.weight[rows][:, ch])
    se.position_embeddings.weight.copy_(te.position_embeddings.weight[: cfg.max_position_embeddings][:, ch])
    se.token_type_embeddings.weight.copy_(te.token_type_embeddings.weight[:1][:, ch])
    _copy_ln(se.LayerNorm, te.LayerNorm, ch)
    q_scale = math.sqrt(d / t_head)
    for li in range(shape.layers):
        t, s = teacher_encoder.encoder.layer[li], student.encoder.layer[li]
        heads = _top(scores["heads"][li], shape.heads)
        qk = torch.cat([h * t_head + _top(scores["qk"][li][h * t_head:(h + 1) * t_head], d) for h in heads.tolist()])
        v = torch.cat([h * t_head + _top(scores["v"][li][h * t_head:(h + 1) * t_head], d) for h in heads.tolist()])
        ta, sa = t.attention, s.attention
        _copy_linear(sa.self.query, ta.self.query, qk, ch, scale=q_scale)
        _copy_linear(sa.self.key, ta.self.key, qk, ch)
        _copy_linear(sa.self.value, ta.self.value, v, ch)
        _copy_linear(sa.output.dense, ta.output.dense, ch, v)
        _copy_ln(sa.output.LayerNorm, ta.output.LayerNorm, ch)
        neurons = _top(scores["ffn"][li], shape.ffn)
        _copy_linear(s.intermediate.dense, t.intermediate.dense, neurons, ch)
        _copy_linear(s.output.dense, t.output.dense, ch, neurons)
        _copy_ln(s.output.LayerNorm, t.output.LayerNorm, ch)
    return student, ch


def _copy_linear(dst, src, out_idx, in_idx, scale: float = 1.0) -> None:
    dst.weight.copy_(src.weight[out_idx][:, in_idx] * scale)
    dst.bias.copy_(src.bias[out_idx] * scale)


def _copy_ln(dst, src, idx) -> None:
    dst.weight.copy_(src.weight[idx])
    dst.bias.copy_(src.bias[idx])
