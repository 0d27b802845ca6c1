"""Trim a tokenizer + embedding table to the pieces a domain uses.

Works on the ``tokenizers`` JSON of Unigram (e5/XLM-R) and WordPiece (BERT, rubert-tiny2)
models. With a Unigram model, text that needs a dropped piece is re-segmented into kept pieces
(falling back to ``<unk>``), and text whose best segmentation uses only kept pieces is tokenised
exactly as before.
"""
from __future__ import annotations

import json

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from corpus.encode import Encoded


def piece_counts(encoded: Encoded, vocab_size: int) -> np.ndarray:
    return np.bincount(encoded.ids, minlength=vocab_size)


def choose_kept_ids(counts: np.ndarray, tokenizer: PreTrainedTokenizerFast, max_pieces: int | None = None) -> np.ndarray:
    """Ids to keep: all special tokens, then pieces seen in the data by frequency (top ``max_pieces``)."""
    special = set(tokenizer.all_special_ids)
    seen = [i for i in np.argsort(-counts, kind="stable") if counts[i] > 0 and i not in special]
    if max_pieces is not None:
        seen = seen[: max(0, max_pieces - len(special))]
    return np.array(sorted(special | set(int(i) for i in seen)), dtype=np.int64)


def _remap_processor(proc: dict | None, new_id: dict[int, int]) -> None:
    if not proc:
        return
    kind = proc.get("type")
    if kind == "Sequence":
        for p in proc["processors"]:
            _remap_processor(p, new_id)
    elif kind == "TemplateProcessing":
        for tok in proc["special_tokens"].values():
            tok["ids"] = [new_id[i] for i in tok["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            proc[key] = [proc[key][0], new_id[proc[key][1]]]


def trim_tokenizer(tokenizer: PreTrainedTokenizerFast, keep_ids: np.ndarray) -> PreTrainedTokenizerFast:
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    new_id = {int(old): new for new, old in enumerate(keep_ids)}
    model = spec["model"]
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in keep_ids]
        model["unk_id"] = new_id[model["unk_id"]]
    elif model["type"] == "WordPiece":
        model["vocab"] = {p: new_id[i] for p, i in model["vocab"].items() if i in new_id}
    else:
        raise ValueError(f"vocabulary trimming supports Unigram and WordPiece tokenizers, not {model['type']}")
    for tok in spec.get("added_tokens", []):
        if tok["id"] not in new_id:
            raise ValueError(f"added token {tok['content']!r} (id {tok['id']}) must be kept")
        tok["id"] = new_id[tok["id"]]
    _remap_processor(spec.get("post_processor"), new_id)
    backend = Tokenizer.from_str(json.dumps(spec))
    return PreTrainedTokenizerFast(tokenizer_object=backend, **tokenizer.special_tokens_map,
                                   model_max_length=tokenizer.model_max_length)


def trim_embeddings(model, keep_ids: np.ndarray) -> None:
    """Keep only rows ``keep_ids`` of the input embedding (in place); updates config ids."""
    old = model.get_input_embeddings()
    idx = torch.as_tensor(keep_ids, dtype=torch.long)
    new = torch.nn.Embedding(len(keep_ids), old.embedding_dim)
    new.weight.data.copy_(old.weight.data[idx])
    model.set_input_embeddings(new)
    new_id = {int(o): n for n, o in enumerate(keep_ids)}
    model.config.vocab_size = len(keep_ids)
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id"):
        val = getattr(model.config, attr, None)
        if val is not None and val in new_id:
            setattr(model.config, attr, new_id[val])


def remap_ids(encoded: Encoded, keep_ids: np.ndarray, unk_new_id: int) -> Encoded:
    """Map old ids to trimmed ids (dropped ones become ``unk``) without re-tokenising."""
    table = np.full(int(encoded.ids.max(initial=0)) + 1, unk_new_id, dtype=np.int32)
    inside = keep_ids[keep_ids < len(table)]
    table[inside] = np.searchsorted(keep_ids, inside)
    return Encoded(table[encoded.ids], encoded.offsets.copy())
