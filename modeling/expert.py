"""Fit the gold-label lexical expert (``inference.expert``) and choose its fusion weight.

The expert is fitted once per search, on the labelled training posts only (hard labels, its own
loss: a linear SVM or logistic regression, not distillation):

1. hashed char 2-5 (within words) + word 1-2 n-grams (``inference.lexical.features``), sublinear
   tf-idf with the idf of each bucket from the training posts, L2 per text;
2. C chosen by K-fold cross-fitting on the training posts (out-of-fold weighted F1): validation
   stays untouched for the fusion weight;
3. a calibration map (multinomial logistic regression on the out-of-fold scores), so that the
   expert's log-probabilities mix with a student's;
4. the table quantized to int8 with one scale per class (what ships).

``choose_weight``: the fusion weight of a student and the expert, on validation.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from inference.expert import Gate, GoldExpert, fuse, log_softmax
from inference.lexical import LexicalSpec, features

log = logging.getLogger(__name__)
MODELS = ("svm", "logreg", "nbsvm")


@dataclass(frozen=True)
class ExpertConfig:
    """How the gold expert is fitted (``search/run.py --expert-*``)."""
    buckets: int = 1 << 16          # hashed n-gram buckets (char 2-5 and word 1-2 share them); 0: no expert
    model: str = "svm"              # "svm" (LinearSVC, squared hinge), "logreg" (multinomial logistic regression) or
                                    # "nbsvm" (one-vs-rest LinearSVC on naive-Bayes-scaled features, Wang & Manning 2012)
    c_grid: tuple[float, ...] = (0.3, 1.0, 3.0)
    folds: int = 5                  # cross-fitting folds (C choice and calibration)
    seed: int = 13

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"expert model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.buckets < 0 or self.buckets == 1:
            raise ValueError(f"expert buckets must be 0 (no expert) or >= 2, got {self.buckets}")
        if self.folds < 2:
            raise ValueError(f"expert folds must be >= 2, got {self.folds}")


def count_matrix(texts: list[str], spec: LexicalSpec, feats: list[np.ndarray] | None = None) -> sparse.csr_matrix:
    """[texts, buckets] n-gram counts (``feats``: precomputed ``features`` of the texts)."""
    feats = feats if feats is not None else [features(t, spec) for t in texts]
    indptr = np.r_[0, np.cumsum([len(f) for f in feats])]
    ids = np.concatenate(feats) if feats else np.zeros(0, np.int64)
    m = sparse.csr_matrix((np.ones(len(ids), np.float32), ids, indptr), shape=(len(feats), spec.buckets))
    m.sum_duplicates()
    return m


def idf_of(counts: sparse.csr_matrix) -> np.ndarray:
    """Smoothed idf per bucket, as scikit-learn's ``TfidfTransformer(smooth_idf=True)``."""
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    n = counts.shape[0]
    return (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)


def tfidf(counts: sparse.csr_matrix, idf: np.ndarray) -> sparse.csr_matrix:
    """Sublinear tf times idf, L2 per row: the same numbers as ``inference.expert.tfidf_row``."""
    x = counts.copy().astype(np.float32)
    x.data = (1.0 + np.log(x.data)) * idf[x.indices]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.csr_matrix(sparse.diags(1.0 / norms) @ x)


def nb_ratios(x: sparse.csr_matrix, y: np.ndarray, n_classes: int, alpha: float = 1.0) -> np.ndarray:
    """[features, classes] naive-Bayes log-count ratios of class k against the rest (NBSVM's feature scaling)."""
    out = np.zeros((x.shape[1], n_classes), np.float32)
    total = np.asarray(x.sum(0)).ravel()
    for k in range(n_classes):
        p = alpha + np.asarray(x[y == k].sum(0)).ravel()
        q = alpha + total - (p - alpha)
        out[:, k] = np.log(p / p.sum()) - np.log(q / q.sum())
    return out


def fit_linear(model: str, c: float, seed: int, x: sparse.csr_matrix, y: np.ndarray,
               n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A linear model's (weights [features, classes], bias [classes]): class scores are ``x @ w + b`` for every
    model (NBSVM's per-class feature scaling folds into its weights, so the runtime is the same)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if model == "nbsvm":
        r = nb_ratios(x, y, n_classes)
        w, b = np.zeros_like(r), np.zeros(n_classes, np.float32)
        for k in range(n_classes):
            clf = LinearSVC(C=c, random_state=seed).fit(sparse.csr_matrix(x.multiply(r[:, k])), (y == k).astype(int))
            w[:, k], b[k] = clf.coef_[0] * r[:, k], clf.intercept_[0]
        return w, b
    clf = (LinearSVC(C=c, random_state=seed) if model == "svm" else LogisticRegression(C=c * 10, max_iter=2000)).fit(x, y)
    w, b = clf.coef_.T.astype(np.float32), clf.intercept_.astype(np.float32)
    if w.shape[1] == 1:  # two classes: one score -> two columns
        w, b = np.concatenate([-w, w], 1), np.r_[-b, b]
    return w, b


def oof_scores(x, y: np.ndarray, model: str, c: float, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold class scores of every training row (stratified K folds)."""
    from sklearn.model_selection import StratifiedKFold

    n_classes = len(np.unique(y))
    out = np.zeros((x.shape[0], n_classes), np.float32)
    for fit_rows, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        w, b = fit_linear(model, c, seed, x[fit_rows], y[fit_rows], n_classes)
        out[held] = x[held] @ w + b
    return out


def quantize_table(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per class (column): (table, scale)."""
    scale = np.maximum(np.abs(w).max(0), 1e-12) / 127.0
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale.astype(np.float32)


def fit_expert(texts: list[str], labels: np.ndarray, cfg: ExpertConfig = ExpertConfig(),
               feats: list[np.ndarray] | None = None) -> tuple[GoldExpert, dict]:
    """The expert fitted on ``texts``/``labels`` (gold, integer classes 0..K-1) and a record of how:
    the C chosen, the cross-fitted weighted F1 of each C, fit time."""
    expert, record, _ = fit_expert_cross_fitted(texts, labels, cfg, feats)
    return expert, record


def fit_expert_cross_fitted(texts: list[str], labels: np.ndarray, cfg: ExpertConfig = ExpertConfig(),
                            feats: list[np.ndarray] | None = None) -> tuple[GoldExpert, dict, np.ndarray]:
    """``fit_expert``, and the calibrated log-probabilities of each training post from the fold that did not see it
    (what the expert says of a post it was not fitted on: the students' fused training uses these for the
    labelled posts, ``trainables/student.py``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    t0 = time.time()
    if cfg.buckets == 0:
        raise ValueError("ExpertConfig.buckets is 0: no expert to fit")
    spec = LexicalSpec(buckets=cfg.buckets)
    y = np.asarray(labels)
    n_classes = int(y.max()) + 1
    if sorted(np.unique(y)) != list(range(n_classes)):
        raise ValueError(f"expert labels must be 0..K-1 with every class present, got {sorted(np.unique(y))}")
    counts = count_matrix(texts, spec, feats)
    idf = idf_of(counts)
    x = tfidf(counts, idf)
    by_c = {}
    for c in cfg.c_grid:
        s = oof_scores(x, y, cfg.model, c, cfg.folds, cfg.seed)
        by_c[c] = (float(f1_score(y, s.argmax(1), average="weighted")), s)
        log.info("gold expert (%s, %d buckets): C=%g cross-fitted wF1 %.4f", cfg.model, cfg.buckets, c, by_c[c][0])
    best = max(by_c, key=lambda c: by_c[c][0])
    oof = by_c[best][1]
    w, b = fit_linear(cfg.model, best, cfg.seed, x, y, n_classes)
    table, scale = quantize_table(w)
    # calibration on the out-of-fold scores: a multinomial logistic map scores -> logits
    cal = LogisticRegression(C=100.0, max_iter=5000).fit(oof, y)
    calib, calib_bias = cal.coef_.T.astype(np.float32), cal.intercept_.astype(np.float32)
    if calib.shape[1] == 1:
        calib, calib_bias = np.concatenate([-calib / 2, calib / 2], 1), np.r_[-calib_bias / 2, calib_bias / 2]
    expert = GoldExpert(spec=spec, table=table, scale=scale, idf=idf, bias=b, calib=calib, calib_bias=calib_bias)
    record = {"model": cfg.model, "buckets": cfg.buckets, "C": best, "folds": cfg.folds,
              "cv_weighted_f1": {str(c): round(v[0], 4) for c, v in by_c.items()},
              "train_posts": len(texts), "nbytes": expert.nbytes, "fit_s": round(time.time() - t0, 1)}
    log.info("gold expert: C=%g (cross-fitted wF1 %.4f), %.2f MiB, %.0f s", best, by_c[best][0],
             expert.nbytes / 2**20, record["fit_s"])
    return expert, record, log_softmax(oof @ calib + calib_bias).astype(np.float32)


WEIGHTS = tuple(np.round(np.arange(0.0, 0.95, 0.05), 2))


def choose_weight(student_logits: np.ndarray, expert_log_probs: np.ndarray, labels: np.ndarray,
                  rule: str = "nll", weights=WEIGHTS) -> tuple[float, dict]:
    """The fusion weight on validation, and the fused figures at each weight. ``rule``: "nll" (the
    weight that minimises the fused model's cross-entropy: smooth in w, so less noisy on a small
    validation set than the argmax figure) or "wf1" (the weight with the best weighted F1)."""
    from sklearn.metrics import f1_score

    y = np.asarray(labels)
    rows = {}
    for w in weights:
        lp = fuse(student_logits, expert_log_probs, float(w))
        lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))  # renormalise the pooled distribution
        rows[float(w)] = {"nll": float(-lp[np.arange(len(y)), y].mean()),
                          "wf1": float(f1_score(y, lp.argmax(1), average="weighted"))}
    if rule == "nll":
        best = min(rows, key=lambda w: rows[w]["nll"])
    elif rule == "wf1":
        best = max(rows, key=lambda w: rows[w]["wf1"])
    else:
        raise ValueError(f"weight rule must be 'nll' or 'wf1', got {rule!r}")
    return best, rows


GATE_SLOPES = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
GATE_TEXTS = 2000  # teacher-labelled transfer texts the slope is fitted on (a seeded sample of the real-text sets)
GATE_KNEE_QUANTILE = 0.9  # the validation posts' rarity quantile beyond which the expert's weight falls


def choose_gate(student_logits: np.ndarray, expert_log_probs: np.ndarray, rarity: np.ndarray, weight: float,
                teacher_logits: np.ndarray, val_rarity: np.ndarray, slopes=GATE_SLOPES) -> tuple[Gate, dict]:
    """The text-dependent weight (``inference.expert.Gate``) at validation weight ``weight``: the knee at the
    ``GATE_KNEE_QUANTILE`` of the validation posts' rarity (``val_rarity``), the slope that brings the fused
    model closest to the teacher (mean KL(teacher || fused)) on teacher-labelled transfer text (``student_logits``,
    ``expert_log_probs``, ``rarity`` and ``teacher_logits`` of those texts: no label, no test text, no fidelity
    slice). Ties go to the smaller slope, so a slope is used only where it changes the answer. Returns the gate
    and each slope's KL and argmax agreement with the teacher."""
    knee = float(np.quantile(np.asarray(val_rarity, np.float64), GATE_KNEE_QUANTILE))
    t = log_softmax(np.asarray(teacher_logits, np.float64))
    rows = {}
    for slope in slopes:
        lp = fuse(student_logits, expert_log_probs, Gate(knee, float(slope)).weights(weight, rarity))
        lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
        rows[float(slope)] = {"kl": float((np.exp(t) * (t - lp)).sum(1).mean()),
                              "agreement": float((lp.argmax(1) == t.argmax(1)).mean())}
    best = min(rows, key=lambda k: (round(rows[k]["kl"], 6), k))
    return Gate(knee=round(knee, 4), slope=best), rows


def set_weight(folder, weight: float, rule: str = "nll", gate: Gate | None = None) -> None:
    """Write the fusion weight into an exported folder's ``config.json`` (``expert.weight``), atomically."""
    import json
    from pathlib import Path

    from inference.atomic import write_text
    from inference.classifier import CONFIG_FILE

    path = Path(folder) / CONFIG_FILE
    config = json.loads(path.read_text(encoding="utf-8"))
    if not config.get("expert"):
        raise ValueError(f"{path}: this folder has no gold expert to weigh")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"expert weight must be in [0, 1], got {weight}")
    config["expert"].update(weight=float(weight), weight_rule=f"{rule} on validation")
    if gate is not None:
        config["expert"]["gate"] = {"knee": float(gate.knee), "slope": float(gate.slope),
                                    "rule": "knee: validation rarity q0.9; slope: KL to the teacher on transfer text"}
    else:
        config["expert"].pop("gate", None)
    write_text(path, json.dumps(config, indent=2, ensure_ascii=False))
