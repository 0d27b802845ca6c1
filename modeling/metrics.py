from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def classification_metrics(y_true, y_pred, prefix: str = "") -> dict[str, float]:
    """Accuracy, weighted F1 (the field's usual RuSentiment figure) and macro F1."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {
        f"{prefix}accuracy": float(accuracy_score(y_true, y_pred)),
        f"{prefix}weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        f"{prefix}macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def weighted_f1(y_true, y_pred, resamples: np.ndarray | None = None) -> np.ndarray | float:
    """Weighted F1 as ``sklearn.metrics.f1_score(average="weighted", zero_division=0)`` computes it (each class's F1
    weighted by its support in ``y_true``), from confusion counts in numpy: ~100x faster, which the bootstraps need.
    ``resamples``: [n, posts] indices; then the figure of each resample, as an array."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    k = int(max(y_true.max(initial=0), y_pred.max(initial=0))) + 1
    cells = y_true * k + y_pred
    idx = np.arange(len(cells))[None] if resamples is None else np.asarray(resamples)
    offsets = np.arange(len(idx))[:, None] * (k * k)
    counts = np.bincount((cells[idx] + offsets).ravel(), minlength=len(idx) * k * k).reshape(len(idx), k, k)
    tp = np.diagonal(counts, axis1=1, axis2=2)
    support, predicted = counts.sum(2), counts.sum(1)
    denominator = support + predicted
    f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)
    total = support.sum(1)
    out = np.divide((f1 * support).sum(1), total, out=np.zeros(len(idx)), where=total > 0)
    return float(out[0]) if resamples is None else out


BOOTSTRAP_CHUNK = 1 << 23  # resampled indices held at once (64 MiB)


def _bootstrap(posts: int, n: int, seed: int, *figures) -> list[np.ndarray]:
    """Each ``figure(resamples)`` over the bootstrap's n resamples: the draws of a loop of ``rng.integers(0, posts,
    posts)``, taken in chunks so memory stays at ~64 MiB of indices whatever the number of posts."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n, BOOTSTRAP_CHUNK // max(posts, 1)))
    out = [[] for _ in figures]
    for start in range(0, n, chunk):
        idx = np.stack([rng.integers(0, posts, posts) for _ in range(min(chunk, n - start))])
        for o, figure in zip(out, figures):
            o.append(figure(idx))
    return [np.concatenate(o) if o else np.zeros(0) for o in out]


def bootstrap_interval(y_true, y_pred, n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of weighted F1 (posts resampled with replacement)."""
    (scores,) = _bootstrap(len(y_true), n, seed, lambda i: weighted_f1(y_true, y_pred, i))
    lo, hi = np.percentile(scores, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


def paired_bootstrap(y_true, pred_a, pred_b, n: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Weighted-F1 difference a - b with a paired percentile bootstrap interval (same resampled posts)."""
    (diffs,) = _bootstrap(len(y_true), n, seed, lambda i: weighted_f1(y_true, pred_a, i) - weighted_f1(y_true, pred_b, i))
    lo, hi = np.percentile(diffs, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    diff = weighted_f1(y_true, pred_a) - weighted_f1(y_true, pred_b)
    return {"diff": float(diff), "low": float(lo), "high": float(hi)}


FIDELITY_PREFIX = "fidelity_"  # trials.csv: fidelity_agreement, fidelity_kl, fidelity_<source> (agreement per source)


@dataclass(frozen=True)
class FidelitySlice:
    """Held-out unlabelled texts (``corpus.fidelity``), their sources and the teacher's logits of them."""
    texts: list[str]
    sources: list[str]
    teacher_logits: np.ndarray

    @property
    def names(self) -> list[str]:
        """The sources, sorted: the per-source columns' order."""
        return sorted(set(self.sources))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def fidelity(student_scores: np.ndarray, teacher_logits: np.ndarray, sources: list[str]) -> dict[str, float]:
    """How closely a student answers like its teacher, without labels: ``fidelity_agreement`` (the share of texts
    where the two argmaxes agree), ``fidelity_kl`` (mean KL(teacher || student) in nats, both softmaxed: the
    student's scores may be logits or log-probabilities) and ``fidelity_<source>`` (agreement within each source).
    The overall figures weigh every text alike."""
    s, t = _log_softmax(student_scores), _log_softmax(teacher_logits)
    agree = s.argmax(1) == t.argmax(1)
    kl = (np.exp(t) * (t - s)).sum(1)
    src = np.asarray(sources)
    out = {f"{FIDELITY_PREFIX}agreement": float(agree.mean()), f"{FIDELITY_PREFIX}kl": float(kl.mean())}
    for name in sorted(set(sources)):
        out[f"{FIDELITY_PREFIX}{name}"] = float(agree[src == name].mean())
    return out


def fidelity_keys(slice_: FidelitySlice | None) -> list[str]:
    """The fidelity columns a trial reports with this slice (none without one)."""
    if slice_ is None:
        return []
    return [f"{FIDELITY_PREFIX}agreement", f"{FIDELITY_PREFIX}kl", *(FIDELITY_PREFIX + n for n in slice_.names)]


def folder_fidelity(folder, slice_: FidelitySlice, threads: int = 1) -> dict:
    """An exported folder's ``fidelity`` to the teacher on the held-out slice, from what the torch-free runtime
    answers (int8, fused, gated, with its class bias when it has one); ``fidelity_s``: what it cost."""
    import time

    from inference import SentimentClassifier

    t0 = time.time()
    scores = SentimentClassifier.load(folder, threads=threads).logits(slice_.texts, 64)
    return {**fidelity(scores, slice_.teacher_logits, slice_.sources), "fidelity_s": time.time() - t0}
