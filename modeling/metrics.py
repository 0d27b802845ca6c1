from __future__ import annotations

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


def bootstrap_interval(y_true, y_pred, n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of weighted F1 (posts resampled with replacement)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n):
        i = rng.integers(0, len(y_true), len(y_true))
        scores.append(f1_score(y_true[i], y_pred[i], average="weighted", zero_division=0))
    lo, hi = np.percentile(scores, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


def paired_bootstrap(y_true, pred_a, pred_b, n: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Weighted-F1 difference a - b with a paired percentile bootstrap interval (same resampled posts)."""
    y_true, pred_a, pred_b = map(np.asarray, (y_true, pred_a, pred_b))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        i = rng.integers(0, len(y_true), len(y_true))
        diffs.append(f1_score(y_true[i], pred_a[i], average="weighted", zero_division=0)
                     - f1_score(y_true[i], pred_b[i], average="weighted", zero_division=0))
    lo, hi = np.percentile(diffs, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    diff = f1_score(y_true, pred_a, average="weighted", zero_division=0) - \
        f1_score(y_true, pred_b, average="weighted", zero_division=0)
    return {"diff": float(diff), "low": float(lo), "high": float(hi)}
