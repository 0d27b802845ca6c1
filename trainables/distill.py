"""The distillation terms a student trial learns from, and the projections they learn through.

``kd_loss`` (soft labels + hard labels), ``feature_loss`` (pooled features), ``hidden_loss`` (mapped layers, pooled),
``token_loss`` (token states, the teacher run beside the student: ``TokenTeacher``); ``DistillHeads`` holds the
learned projections of the last three (dropped at export) and computes their weighted sum for a batch.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from modeling import EncoderClassifier
from spaces.student import StudentConfig


def kd_loss(student_logits, teacher_logits, labels, alpha: float, temperature: float):
    """alpha * T^2 * KL(teacher || student at T) + (1 - alpha) * CE on the labelled rows (label >= 0;
    teacher-labelled transfer posts carry -1 and only the soft term)."""
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, -1), F.softmax(teacher_logits / t, -1),
                    reduction="batchmean") * t * t
    labelled = labels >= 0
    if alpha >= 1 or not labelled.any():
        return alpha * soft
    return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits[labelled], labels[labelled])


def fuse_log_probs(student_logits, expert_log_probs, weight: float):
    """The fused model's log-probabilities in torch, as the runtime computes them (``inference.expert.fuse``):
    ``(1 - w) * log_softmax(student) + w * expert``. Fused training (``StudentConfig.fused_weight``) puts these, not
    the student's own logits, into ``kd_loss``."""
    return (1 - weight) * F.log_softmax(student_logits, -1) + weight * expert_log_probs


def feature_loss(student_pooled, teacher_pooled, projection):
    """1 - cosine between the projected student features and the teacher's pooled features."""
    return (1 - F.cosine_similarity(projection(student_pooled), teacher_pooled.float(), dim=-1)).mean()


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer (0-based) each student layer learns: uniform, the top layer to the top layer."""
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


def hidden_loss(student_layers, teacher_layers, projections):
    """Mean over student layers of 1 - cosine(projected student layer, its mapped teacher layer);
    both [batch, layers, width] pooled outputs (teacher already restricted to the mapped layers)."""
    losses = [1 - F.cosine_similarity(p(student_layers[:, i]), teacher_layers[:, i].float(), dim=-1)
              for i, p in enumerate(projections)]
    return torch.stack(losses, 1).mean()


def token_loss(student_tokens, teacher_tokens, projections, mask) -> torch.Tensor:
    """Mean over mapped layers of the masked token mean of 1 - cosine(projected student state, teacher state)."""
    keep = mask.bool()
    losses = [(1 - F.cosine_similarity(p(s.float()), t.float(), dim=-1))[keep].mean()
              for s, t, p in zip(student_tokens, teacher_tokens, projections)]
    return torch.stack(losses).mean()


class TokenTeacher:
    """The teacher's bottom layers, run beside a student on the student's pieces (mapped to the
    teacher's ids) for token-level distillation; ``mapped[i]`` = the teacher layer student layer i learns."""

    def __init__(self, teacher: EncoderClassifier, teacher_tok, student_tok, cfg: StudentConfig, device):
        n_teacher = teacher.encoder.config.num_hidden_layers
        self.mapped = list(range(cfg.layers)) if cfg.init == "pruned" else layer_map(cfg.layers, n_teacher)
        encoder = teacher.encoder.float()
        encoder.encoder.layer = encoder.encoder.layer[: max(self.mapped) + 1]
        self.encoder = encoder.to(device).eval().requires_grad_(False)
        pieces = student_tok.convert_ids_to_tokens(list(range(len(student_tok))))
        self.id_map = torch.as_tensor(teacher_tok.convert_tokens_to_ids(pieces), device=device)
        self.width = encoder.config.hidden_size

    @torch.no_grad()
    def __call__(self, ids, mask) -> list[torch.Tensor]:
        out = self.encoder(input_ids=self.id_map[ids], attention_mask=mask, output_hidden_states=True)
        return [out.hidden_states[m + 1] for m in self.mapped]


class DistillHeads(torch.nn.Module):
    """The projections the feature, hidden-state and token terms learn through, one state dict for all: ``feature``
    (pooled -> the teacher's pooled width), ``hidden`` (one per mapped teacher layer), ``token`` (one per student
    layer); a term whose weight is 0 has none. ``loss`` adds the weighted terms of a batch."""

    def __init__(self, cfg: StudentConfig, feature_width: int | None, n_mapped: int, layer_width: int | None,
                 token_width: int | None):
        super().__init__()
        self.cfg = cfg
        self.feature = torch.nn.Linear(cfg.hidden, feature_width) if cfg.feature_kd > 0 else None
        self.hidden = (torch.nn.ModuleList(torch.nn.Linear(cfg.hidden, layer_width) for _ in range(n_mapped))
                       if cfg.hidden_kd > 0 else None)
        self.token = (torch.nn.ModuleList(torch.nn.Linear(cfg.hidden, token_width) for _ in range(cfg.layers))
                      if cfg.token_kd > 0 else None)

    @staticmethod
    def from_checkpoint(state: dict) -> dict:
        """The heads' state dict in a trial checkpoint: ``state["heads"]``, or, in a checkpoint written before the
        heads were one module, the three projections' state dicts under their old keys (so --resume still works)."""
        if "heads" in state:
            return state["heads"]
        out = {}
        for old, new in (("projection", "feature"), ("layer_proj", "hidden"), ("token_proj", "token")):
            out.update({f"{new}.{k}": v for k, v in (state.get(old) or {}).items()})
        return out

    def token_term(self, tokens, token_teacher: TokenTeacher, ids, mask) -> torch.Tensor | None:
        """The token term of a batch (computed where the student's forward ran: under its autocast)."""
        return None if self.token is None else token_loss(tokens, token_teacher(ids, mask), self.token, mask)

    def loss(self, kd, pooled, layers, token_term, index: np.ndarray, n_labelled: int, t_feats, t_layers):
        """``kd`` plus the weighted terms of a batch of pool rows ``index`` (the labelled posts come first in the
        pool, and only they have teacher layer outputs)."""
        loss = kd
        if self.feature is not None:
            loss = loss + self.cfg.feature_kd * feature_loss(pooled, t_feats[index], self.feature)
        if token_term is not None:
            loss = loss + self.cfg.token_kd * token_term.float()
        rows = index[index < n_labelled] if self.hidden is not None else []
        if len(rows):
            keep = torch.as_tensor(index < n_labelled, device=pooled.device)
            loss = loss + self.cfg.hidden_kd * hidden_loss(layers[0][keep], t_layers[rows].to(pooled.device),
                                                           self.hidden)
        return loss
