"""Hashed lexical features: the torch-free half of the lexical branch (numpy only).

A student may carry a linear "lexical branch" beside its transformer: hashed character n-grams
(within whitespace-separated words padded with spaces, like scikit-learn's ``char_wb``) and word
uni- and bigrams (``\\w+`` words) of the lower-cased text, each weighted 1 / sqrt(number of
features of the text), index a table of per-class weights whose sum joins the transformer's
logits. The same function computes the features for training (``modeling.lexical``) and for the
runtime (``inference.classifier``), so the two cannot drift apart.

Hashing is vectorised in numpy (a polynomial rolling hash mod 2^64 over code points, then a
splitmix64 finaliser), so no per-n-gram Python loop runs: ~0.05 ms for a typical post.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

_P = np.uint64(0x100000001B3)          # odd multiplier of the rolling hash
_MAX_WORD = 64                          # longer words hash their first 64 code points
_POW = np.cumprod(np.r_[np.uint64(1), np.full(_MAX_WORD - 1, _P, dtype=np.uint64)], dtype=np.uint64)
_WORD = re.compile(r"\w+")
_TAG_WORD, _TAG_BIGRAM = 101, 102


@dataclass(frozen=True)
class LexicalSpec:
    buckets: int = 1 << 17
    char_min: int = 2
    char_max: int = 5
    word_bigrams: bool = True

    def __post_init__(self):
        if self.buckets < 2:
            raise ValueError(f"lexical buckets must be >= 2, got {self.buckets}")
        if not 1 <= self.char_min <= self.char_max <= 8:
            raise ValueError(f"lexical char n-grams need 1 <= char_min <= char_max <= 8, got "
                             f"{self.char_min}..{self.char_max}")

    def to_dict(self) -> dict:
        return asdict(self)


_SALT = {tag: np.uint64((tag * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) for tag in range(1, 9)}
_SALT.update({t: np.uint64((t * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) for t in (_TAG_WORD, _TAG_BIGRAM)})


def _mix(x: np.ndarray, buckets: int) -> np.ndarray:
    """splitmix64 finaliser -> bucket ids."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x % np.uint64(buckets)).astype(np.int64)


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def features(text: str, spec: LexicalSpec) -> np.ndarray:
    """Bucket ids of one text's n-grams (repeats kept: a repeated n-gram counts twice)."""
    t = text.lower()
    raw = []
    words = t.split()
    with np.errstate(over="ignore"):
        if words:
            c = _codes("".join([f" {w} " for w in words]))
            wid = np.repeat(np.arange(len(words)), np.fromiter(map(len, words), np.int64, len(words)) + 2)
            h = c
            for n in range(2, spec.char_max + 1):
                m = len(c) - n + 1
                if m <= 0:
                    break
                h = h[:m] + c[n - 1:] * _POW[n - 1]
                if n >= spec.char_min:
                    raw.append(h[wid[:m] == wid[n - 1:]] ^ _SALT[n])
            if spec.char_min == 1:
                raw.append(c ^ _SALT[1])
        tokens = _WORD.findall(t)
        if tokens:
            lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
            if lengths.max() > _MAX_WORD:
                tokens = [w[:_MAX_WORD] for w in tokens]
                np.minimum(lengths, _MAX_WORD, out=lengths)
            c = _codes("".join(tokens))
            starts = np.cumsum(lengths) - lengths
            hw = np.add.reduceat(c * _POW[np.arange(len(c)) - np.repeat(starts, lengths)], starts)
            raw.append(hw ^ _SALT[_TAG_WORD])
            if spec.word_bigrams and len(tokens) > 1:
                raw.append((hw[:-1] * _P + hw[1:]) ^ _SALT[_TAG_BIGRAM])
    return _mix(np.concatenate(raw), spec.buckets) if raw else np.zeros(0, dtype=np.int64)


def batch_features(texts: list[str], spec: LexicalSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, offsets, weights) of a batch in ``torch.nn.EmbeddingBag`` layout: text i owns
    ``ids[offsets[i]:offsets[i + 1]]``; each id weighs 1 / sqrt(the text's feature count)."""
    feats = [features(t, spec) for t in texts]
    counts = np.array([len(f) for f in feats], dtype=np.int64)
    offsets = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
    weights = np.repeat(1.0 / np.sqrt(np.maximum(counts, 1)), counts).astype(np.float32)
    ids = np.concatenate(feats) if feats else np.zeros(0, dtype=np.int64)
    return ids.astype(np.int64), offsets, weights


def lexical_logits(table: np.ndarray, texts: list[str], spec: LexicalSpec,
                   scale: np.ndarray | None = None) -> np.ndarray:
    """[len(texts), classes]: the branch's contribution for each text. ``table``: [buckets, classes]
    (float, or int8 with its per-class ``scale``)."""
    return lexical_logits_of(table, [features(t, spec) for t in texts], scale)


def lexical_logits_of(table: np.ndarray, feats: list[np.ndarray], scale: np.ndarray | None = None) -> np.ndarray:
    """``lexical_logits`` from each text's precomputed ``features``."""
    out = np.zeros((len(feats), table.shape[1]), dtype=np.float32)
    for i, ids in enumerate(feats):
        if len(ids):
            out[i] = table[ids].sum(0, dtype=np.float32) / np.sqrt(len(ids))
    return out if scale is None else out * scale.astype(np.float32)
