"""TF-IDF (char 2-5 + word 1-2) + LinearSVC baseline on the experiment's own split, trained as a user
would train it: C chosen by stratified 5-fold cross-validation over every labelled post (train + validation)
on a grid that brackets the optimum (widened by a factor of 3 while the best C sits at an edge), then the
pipeline refitted on all of them. The report measures it in the same run as the students, never from a cache;
test figures are for the report. Latency: one text at a time through ``decision_function`` on 1 thread, the
texts the student benchmark times (``inference.benchmark.bench_sample``); size: the pickled pipeline.
"""
from __future__ import annotations

import logging
import pickle
import time

import numpy as np

from modeling.metrics import classification_metrics

log = logging.getLogger(__name__)
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
FOLDS = 5
MAX_WIDENINGS = 3  # the grid grows by at most this many factors of 3 on one side


def _features():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_union

    return make_union(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, max_features=200_000),
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True))


def _pipeline(c: float):
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    return make_pipeline(_features(), LinearSVC(C=c))


def cross_validate_c(texts: list[str], labels: np.ndarray, grid=C_GRID, folds: int = FOLDS, seed: int = 0) -> dict:
    """Mean weighted F1 of each C over stratified ``folds``-fold cross-validation. The features are fitted on
    each fold's training part once and shared by every C (they do not depend on C: the same scores as a
    ``GridSearchCV`` over the pipeline at a fifth of its vectorizer fits). While the best C is the grid's
    smallest or largest, the grid is widened by a factor of 3 on that side (upwards while the largest C is as good
    as the best, e.g. on a flat grid where every C underfits; at most ``MAX_WIDENINGS`` times).
    Returns {"scores": {C: mean wF1}, "best": C, "bracketed": bool}."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import LinearSVC

    labels = np.asarray(labels)
    splits = []
    for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(texts, labels):
        features = _features()
        splits.append((features.fit_transform([texts[i] for i in train]), labels[train],
                       features.transform([texts[i] for i in held]), labels[held]))
    scores: dict[float, float] = {}

    def score(c: float) -> None:
        if c not in scores:
            scores[c] = float(np.mean([classification_metrics(yh, LinearSVC(C=c).fit(xt, yt).predict(xh))["weighted_f1"]
                                       for xt, yt, xh, yh in splits]))
            log.info("TF-IDF + LinearSVC: C=%g %d-fold CV weighted F1 %.4f", c, folds, scores[c])

    def best_c() -> float:  # the best mean; among equal means the smallest C (the more regularised model)
        top = max(scores.values())
        return min(c for c, v in scores.items() if v == top)

    for c in grid:
        score(c)
    for _ in range(MAX_WIDENINGS):
        top, low, high = max(scores.values()), min(scores), max(scores)
        if scores[high] == top:  # still as good at the largest C (or flat): look higher
            score(high * 3)
        elif best_c() == low:
            score(low / 3)
        else:
            break
    best = best_c()
    return {"scores": dict(sorted(scores.items())), "best": best, "bracketed": min(scores) < best < max(scores)}


def tfidf_baseline(splits, n_latency: int = 300, seed: int = 0, ood=None, return_model: bool = False):
    """Figures (test and, with ``ood``, out-of-domain, with bootstrap intervals; latency; size) and
    the predictions {"test": ..., "ood": ...} (and, with ``return_model``, the refitted pipeline)."""
    from modeling.metrics import bootstrap_interval

    t0 = time.time()
    texts = splits.train.text.tolist() + splits.val.text.tolist()
    labels = np.concatenate([splits.train.label.to_numpy(), splits.val.label.to_numpy()])
    cv = cross_validate_c(texts, labels, seed=seed)
    best_c = cv["best"]
    # the validation figure the plots place beside the students' (fitted on train only, as they are)
    val_wf1 = classification_metrics(splits.val.label.to_numpy(), _pipeline(best_c).fit(
        splits.train.text.tolist(), splits.train.label.to_numpy()).predict(splits.val.text.tolist()))["weighted_f1"]
    model = _pipeline(best_c).fit(texts, labels)  # every labelled post
    log.info("TF-IDF + LinearSVC: C=%g (%d-fold CV) refitted on %d labelled posts (train + validation)", best_c,
             FOLDS, len(texts))
    preds = {"test": model.predict(splits.test.text.tolist())}
    test = classification_metrics(splits.test.label.to_numpy(), preds["test"])
    extra = dict(zip(("test_wf1_low", "test_wf1_high"), bootstrap_interval(splits.test.label.to_numpy(), preds["test"])))
    if ood is not None:
        preds["ood"] = model.predict(ood.text.tolist())
        extra.update(classification_metrics(ood.label.to_numpy(), preds["ood"], "ood_"))
        extra.update(zip(("ood_wf1_low", "ood_wf1_high"), bootstrap_interval(ood.label.to_numpy(), preds["ood"])))
    blob = pickle.dumps(model)
    lat, sha = tfidf_latency_ms(model, splits.val.text.tolist(), n_latency)
    figures = {"name": f"TF-IDF (char_wb 2-5 + word 1-2) + LinearSVC, C by {FOLDS}-fold CV on all labelled posts",
               "C": best_c, "cv_weighted_f1": {f"{c:g}": round(v, 4) for c, v in cv["scores"].items()},
               "c_bracketed": cv["bracketed"], "fit_posts": len(texts),
               "val_weighted_f1": round(val_wf1, 4),
               **{f"test_{k}": round(v, 4) for k, v in test.items()},
               **{k: round(float(v), 4) for k, v in extra.items()}, "e2e_ms_p50": float(np.median(lat)),
               "size_mib": len(blob) / 2**20, "latency_ms_p50": float(np.median(lat)),
               "latency_ms_p95": float(np.percentile(lat, 95)), "bench_threads": 1, "n_latency": len(lat),
               "bench_sha": sha, "fit_s": round(time.time() - t0, 1)}
    return (figures, preds, model) if return_model else (figures, preds)


def tfidf_latency_ms(model, texts: list[str], n_latency: int = 300, warmup: int | None = None) -> tuple[np.ndarray, str]:
    """Per-text latency (ms) of the fitted pipeline, one text at a time (``decision_function([text])``, text
    in -> class scores out), 1 thread, on the texts ``inference.benchmark.bench_sample`` draws (the ones the
    students' benchmark times), after ``warmup`` calls (default: the students' rule); and their fingerprint."""
    from threadpoolctl import threadpool_limits

    from inference.benchmark import bench_sample, default_warmup

    warmup = default_warmup(n_latency) if warmup is None else warmup  # as the students' benchmark
    sample, sha = bench_sample(texts, n_latency, warmup)
    lat = []
    with threadpool_limits(1):
        for i, t in enumerate(sample):
            s = time.perf_counter()
            model.decision_function([t])
            if i >= warmup:
                lat.append((time.perf_counter() - s) * 1e3)
    return np.asarray(lat), sha
