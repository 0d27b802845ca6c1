"""The gold-label lexical expert: the torch-free half (numpy only).

A linear model over hashed character and word n-grams (``inference.lexical.features``), fitted on
the *gold labels* of the training posts (``modeling.expert``), not on the teacher's outputs: it
carries what the teacher misses. Features are tf-idf weighted like scikit-learn's
``TfidfVectorizer(sublinear_tf=True)``: ``(1 + ln tf) * idf[bucket]``, then L2-normalised per text.
The class scores ``x @ table + bias`` go through a calibration map fitted on cross-fitted
(out-of-fold) scores of the training posts, so its log-probabilities are on the same footing as a
student's. A model folder with an expert fuses the two::

    log p(c | text) = (1 - w) * log_softmax(student logits) + w * log p_expert(c | text)

with ``w`` (``config.json`` ``expert.weight``) chosen on validation for each trial. The weight may follow the
text (``config.json`` ``expert.gate``, ``gate_weights``): the expert knows the n-grams of the labelled posts, and
on text whose n-grams are rarer than nearly all of theirs (other platforms, other domains) its word counts
say less than the student, so its weight falls with the text's *rarity* (the mean idf of its n-grams)::

    w(text) = w * clip(1 - slope * (rarity(text) - knee), 0, 1)      (the full w up to the knee)

``knee`` is a high quantile of the validation posts' rarity (in-domain text keeps ``w``) and ``slope`` is fitted
on teacher-labelled transfer text (``modeling.expert.choose_gate``); ``slope = 0`` is the fixed weight.

Stored in ``expert.npz``: ``table`` (int8, [buckets, classes]) with per-class ``scale``, ``idf``
(float16, [buckets]), ``bias``, ``calib`` ([classes, classes]) and ``calib_bias``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .lexical import LexicalSpec, features

EXPERT_FILE = "expert.npz"
ARRAYS = ("table", "scale", "idf", "bias", "calib", "calib_bias")


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def tfidf_row(ids: np.ndarray, idf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique bucket ids, L2-normalised sublinear tf-idf values) of one text's n-gram ids."""
    u, tf = unique_counts(ids)
    if not len(u):
        return u, np.zeros(0, np.float32)
    x = (1.0 + np.log(tf)).astype(np.float32) * idf[u].astype(np.float32)
    n = float(np.sqrt(x @ x))
    return u, x / n if n > 0 else x


def unique_counts(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(ids, return_counts=True)`` in fewer numpy calls (it is on the per-text latency path)."""
    if not len(ids):
        return ids, np.zeros(0, np.int64)
    s = np.sort(ids)
    first = np.empty(len(s), bool)
    first[0] = True
    np.not_equal(s[1:], s[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return s[starts], np.diff(starts, append=len(s))


@dataclass
class GoldExpert:
    spec: LexicalSpec
    table: np.ndarray        # [buckets, classes] int8 (with ``scale``) or float32
    scale: np.ndarray | None  # [classes] per-class scale of an int8 table
    idf: np.ndarray          # [buckets]
    bias: np.ndarray         # [classes]
    calib: np.ndarray        # [classes, classes]: calibrated logits = scores @ calib + calib_bias
    calib_bias: np.ndarray   # [classes]

    def scores_of(self, ids: np.ndarray) -> np.ndarray:
        """Raw class scores of one text from its n-gram bucket ids (``features(text, spec)``)."""
        u, x = tfidf_row(ids, self.idf)
        s = x @ self.table[u].astype(np.float32) if len(u) else np.zeros(self.table.shape[1], np.float32)
        if self.scale is not None:
            s = s * self.scale
        return s + self.bias

    @cached_property
    def _packed(self) -> tuple[np.ndarray, np.ndarray]:
        """What ``log_probs_of`` reads, folded once: the rows ``(table * scale) @ calib`` beside each
        bucket's idf in one float32 array [buckets, classes + 1] (one memory fetch per n-gram, not two),
        and the bias ``bias @ calib + calib_bias``. The calibration is linear, so this is the same map."""
        t = self.table.astype(np.float32)
        if self.scale is not None:
            t *= self.scale.astype(np.float32)
        packed = np.empty((t.shape[0], t.shape[1] + 1), np.float32)
        packed[:, :-1] = t @ self.calib.astype(np.float32)
        packed[:, -1] = self.idf
        return packed, (self.bias @ self.calib + self.calib_bias).astype(np.float32)

    def log_probs_of(self, ids_per_text: list[np.ndarray], rarity: np.ndarray | None = None) -> np.ndarray:
        """[texts, classes] calibrated log-probabilities from each text's n-gram ids; ``rarity`` ([texts], when
        given) receives each text's mean n-gram idf (``gate_weights``; 0 for a text without n-grams)."""
        packed, bias = self._packed
        z = np.empty((len(ids_per_text), packed.shape[1] - 1), np.float32)
        for i, ids in enumerate(ids_per_text):
            u, tf = unique_counts(ids)
            rows = packed[u]
            x = (1.0 + np.log(tf)).astype(np.float32) * rows[:, -1]
            n = float(np.sqrt(x @ x))
            z[i] = (x @ rows[:, :-1]) / n + bias if n > 0 else bias
            if rarity is not None:
                rarity[i] = float(tf @ rows[:, -1]) / len(ids) if len(ids) else 0.0
        return log_softmax(z)

    def log_probs(self, texts: list[str]) -> np.ndarray:
        return self.log_probs_of([features(t, self.spec) for t in texts])

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"table": self.table, "idf": self.idf.astype(np.float16), "bias": self.bias.astype(np.float32),
               "calib": self.calib.astype(np.float32), "calib_bias": self.calib_bias.astype(np.float32)}
        if self.scale is not None:
            out["scale"] = self.scale.astype(np.float32)
        return out

    def save(self, path: Path) -> Path:
        """``expert.npz`` (written whole, then renamed into place)."""
        from .atomic import atomic_file

        with atomic_file(Path(path)) as tmp, open(tmp, "wb") as f:
            np.savez(f, **self.arrays())
        return Path(path)

    @classmethod
    def load(cls, path: Path, spec: LexicalSpec) -> "GoldExpert":
        with np.load(path) as z:
            a = {k: z[k] for k in z.files}
        missing = [k for k in ARRAYS if k not in a and k != "scale"]
        if missing:
            raise KeyError(f"arrays {missing} missing")
        expert = cls(spec=spec, table=a["table"], scale=a.get("scale"), idf=a["idf"].astype(np.float32),
                     bias=a["bias"], calib=a["calib"], calib_bias=a["calib_bias"])
        if expert.table.shape[0] != spec.buckets or expert.idf.shape != (spec.buckets,):
            raise ValueError(f"table {expert.table.shape} / idf {expert.idf.shape} do not match {spec.buckets} buckets")
        expert._packed  # folded at load, so the first text classified does not pay for it
        return expert

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays().values())


@dataclass(frozen=True)
class Gate:
    """The text-dependent weight's two numbers (``config.json`` ``expert.gate``)."""
    knee: float   # rarity up to which a text keeps the full weight
    slope: float  # how fast the weight falls beyond it, per unit of rarity (0: the fixed weight)

    def weights(self, weight: float, rarity: np.ndarray) -> np.ndarray:
        """Each text's weight: ``weight * clip(1 - slope * (rarity - knee), 0, 1)``: the full weight up to the knee
        (the clip's upper bound), falling linearly beyond it."""
        r = np.asarray(rarity, np.float32)
        return (weight * np.clip(1.0 - self.slope * (r - self.knee), 0.0, 1.0)).astype(np.float32)


def fuse(student_logits: np.ndarray, expert_log_probs: np.ndarray | None, weight) -> np.ndarray:
    """The fused model's log-probabilities: ``(1 - w) * log_softmax(student) + w * expert``; with no
    expert (or ``w == 0``) the student's log-probabilities alone. ``weight``: one number, or one per text
    (``Gate.weights``)."""
    s = log_softmax(np.asarray(student_logits, np.float32))
    if expert_log_probs is None or (np.ndim(weight) == 0 and weight == 0):
        return s
    w = np.asarray(weight, np.float32)
    w = w[:, None] if w.ndim == 1 else w
    return (1.0 - w) * s + w * np.asarray(expert_log_probs, np.float32)
