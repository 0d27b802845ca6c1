"""A class-prior bias for an exported folder, fitted on validation (``analysis/export.py --class-bias fit``).

The folder's answer z (log-probabilities: the student fused with its gold expert, or the student alone) becomes
z + b, with b (one number per class, centred) minimising the validation cross-entropy of softmax(z + b). It moves
the decisions towards the validation posts' class mix (docs/results.md: +.010 cross-fitted validation weighted F1
and +.017 on RuSentiTweet over 13 students, flat on RuSentiment's test, whose class mix differs). The runtime adds b
(``config.json`` ``class_bias``) to what ``SentimentClassifier.logits`` answers.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RULE = "minimum validation cross-entropy of softmax(answer + bias)"


def log_probs(z: np.ndarray) -> np.ndarray:
    """The runtime's stable log-softmax (``inference.expert.log_softmax``), in float64 for the optimiser."""
    from inference.expert import log_softmax

    return log_softmax(np.asarray(z, np.float64))


def cross_entropy(bias: np.ndarray, z: np.ndarray, labels: np.ndarray) -> float:
    lp = log_probs(z + bias)
    return float(-lp[np.arange(len(labels)), labels].mean())


def fit_class_bias(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The centred bias (one per class) minimising the cross-entropy of softmax(z + bias) on ``labels``."""
    from scipy.optimize import minimize

    z, y = log_probs(z), np.asarray(labels)
    if len(y) == 0:
        raise ValueError("no validation posts to fit a class bias on")

    def loss(b):  # the cross-entropy and its gradient: mean(softmax(z + b)) - the labels' class frequencies
        lp = log_probs(z + b)
        grad = np.exp(lp).mean(0) - np.bincount(y, minlength=z.shape[1]) / len(y)
        return float(-lp[np.arange(len(y)), y].mean()), grad

    b = minimize(loss, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B").x
    return b - b.mean()


def cross_fitted_gain(z: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 13) -> dict:
    """Validation weighted F1 and cross-entropy without and with a bias fitted on the other folds: what the bias
    is worth on posts it was not fitted on."""
    from modeling.metrics import weighted_f1

    y = np.asarray(labels)
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    after = np.empty(len(y), np.int64)
    change = 0.0
    for f in range(folds):
        fit, held = fold != f, fold == f
        b = fit_class_bias(z[fit], y[fit])
        after[held] = (np.asarray(z[held]) + b).argmax(1)
        change += (cross_entropy(b, z[held], y[held]) - cross_entropy(np.zeros_like(b), z[held], y[held])) * held.sum()
    return {"val_wf1_gain_cv": round(weighted_f1(y, after) - weighted_f1(y, np.asarray(z).argmax(1)), 4),
            "val_cross_entropy_change_cv": round(change / len(y), 4), "folds": folds}


def set_class_bias(folder: Path, bias: np.ndarray, record: dict) -> None:
    """Write the bias into an exported folder's ``config.json`` (``class_bias``: per label), atomically."""
    from inference.atomic import write_text
    from inference.classifier import CONFIG_FILE

    path = Path(folder) / CONFIG_FILE
    config = json.loads(path.read_text(encoding="utf-8"))
    if len(bias) != len(config["labels"]) or not np.isfinite(bias).all():
        raise ValueError(f"class bias must be {len(config['labels'])} finite numbers, got {list(bias)}")
    config["class_bias"] = {"bias": [round(float(v), 6) for v in bias], "rule": RULE, **record}
    write_text(path, json.dumps(config, indent=2, ensure_ascii=False))
