"""The training and inference loops shared by the teacher and student trainables: length-bucketed batches,
padding, prediction over encoded posts, the optimizer step and its schedule."""
from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from corpus.encode import Encoded

from .device import autocast_context

log = logging.getLogger(__name__)


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Batches of similar length (little padding). With ``rng``: shuffled within 50-batch pools
    and in batch order; without: sorted, for inference."""
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    perm = rng.permutation(n)
    pool = batch_size * 50
    batches = []
    for start in range(0, n, pool):
        chunk = perm[start:start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(encoded: Encoded, index: np.ndarray, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [encoded.row(int(i)) for i in index]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for j, r in enumerate(rows):
        ids[j, :len(r)] = r
        mask[j, :len(r)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


@torch.no_grad()
def predict_logits(model, encoded: Encoded, pad_id: int, batch_size: int = 128, bf16: str = "auto",
                   progress: str | None = None, pooled: bool = False, layers: bool = False,
                   texts: list[str] | None = None):
    """Logits for every row and, as float16, with ``pooled`` the pooled encoder features
    [rows, hidden], with ``layers`` every layer's pooled output [rows, layers, hidden];
    with ``progress`` (a label) logs about every 10 % of the rows. ``texts`` (the rows' texts)
    feed a student's lexical branch; without them the logits are the transformer's alone."""
    if pooled and layers:
        raise ValueError("predict_logits: ask for pooled or layers, not both")
    model.eval()
    out = np.zeros((len(encoded), len(model.config.labels)), dtype=np.float32)
    ec = model.encoder.config
    shape = (len(encoded), ec.num_hidden_layers, ec.hidden_size) if layers else (len(encoded), ec.hidden_size)
    feats = np.zeros(shape, dtype=np.float16) if pooled or layers else None
    done, next_log, t0 = 0, len(encoded) / 10, time.time()
    device = next(model.parameters()).device
    for index in length_batches(encoded.lengths(), batch_size, None):
        ids, mask = (t.to(device) for t in collate(encoded, index, pad_id))
        lex = None
        if texts is not None and getattr(model, "lexical", None) is not None:
            lex = tuple(t.to(device) for t in model.lexical_inputs([texts[i] for i in index]))
        with autocast_context(bf16, device.type):
            if pooled or layers:
                logits, feat = model(ids, mask, return_pooled=pooled, return_layers=layers, lexical=lex)
                feats[index] = feat.float().cpu().numpy()
            else:
                logits = model(ids, mask, lexical=lex)
        out[index] = logits.float().cpu().numpy()
        done += len(index)
        if progress and done >= next_log:
            log.info("%s: %d/%d posts, %.0f s", progress, done, len(encoded), time.time() - t0)
            next_log += len(encoded) / 10
    return (out, feats) if pooled or layers else out


def linear_warmup_decay(optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def optimizer_step(model, loss: torch.Tensor, optimizer, scheduler, max_norm: float = 1.0) -> float:
    """Backward, clip, step, schedule, zero the gradients; returns the loss value."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)
