"""TF-IDF (char 2-5 + word 1-2) + LinearSVC baseline on the experiment's own split, trained as a user
would train it: C is chosen on the validation split (fitted on train), then the pipeline is refitted on
every labelled post (train + validation; TF-IDF needs no held-out posts once C is chosen). The report
measures it in the same run as the students, never from a cache; test figures are for the report. Latency: one text at a
time through ``vectorizer.transform`` + ``decision_function`` on 1 thread, the same sampled
validation posts as the student benchmark; size: the pickled pipeline.
"""
from __future__ import annotations

import logging
import pickle
import time

import numpy as np

from modeling.metrics import classification_metrics

log = logging.getLogger(__name__)
C_GRID = (0.1, 0.3, 1.0)


def _pipeline(c: float):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.svm import LinearSVC

    features = make_union(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, max_features=200_000),
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True))
    return make_pipeline(features, LinearSVC(C=c))


def tfidf_baseline(splits, n_latency: int = 300, seed: int = 0, ood=None, return_model: bool = False):
    """Figures (test and, with ``ood``, out-of-domain, with bootstrap intervals; latency; size) and
    the predictions {"test": ..., "ood": ...} (and, with ``return_model``, the refitted pipeline)."""
    from modeling.metrics import bootstrap_interval

    t0 = time.time()
    train_x, train_y = splits.train.text.tolist(), splits.train.label.to_numpy()
    val_x, val_y = splits.val.text.tolist(), splits.val.label.to_numpy()
    by_c = {}
    for c in C_GRID:
        model = _pipeline(c).fit(train_x, train_y)
        by_c[c] = (classification_metrics(val_y, model.predict(val_x))["weighted_f1"], model)
        log.info("TF-IDF + LinearSVC: C=%g val weighted F1 %.4f", c, by_c[c][0])
    best_c = max(by_c, key=lambda c: by_c[c][0])
    model = _pipeline(best_c).fit(train_x + val_x, np.concatenate([train_y, val_y]))  # every labelled post
    log.info("TF-IDF + LinearSVC: C=%g refitted on %d labelled posts (train + validation)", best_c,
             len(train_x) + len(val_x))
    preds = {"test": model.predict(splits.test.text.tolist())}
    test = classification_metrics(splits.test.label.to_numpy(), preds["test"])
    extra = dict(zip(("test_wf1_low", "test_wf1_high"), bootstrap_interval(splits.test.label.to_numpy(), preds["test"])))
    if ood is not None:
        preds["ood"] = model.predict(ood.text.tolist())
        extra.update(classification_metrics(ood.label.to_numpy(), preds["ood"], "ood_"))
        extra.update(zip(("ood_wf1_low", "ood_wf1_high"), bootstrap_interval(ood.label.to_numpy(), preds["ood"])))
    blob = pickle.dumps(model)
    lat = tfidf_latency_ms(model, val_x, n_latency, seed)
    figures = {"name": "TF-IDF (char_wb 2-5 + word 1-2) + LinearSVC, C from validation, refitted on train + validation",
            "C": best_c, "fit_posts": len(train_x) + len(val_x),
            "val_weighted_f1": round(by_c[best_c][0], 4), **{f"test_{k}": round(v, 4) for k, v in test.items()},
            **{k: round(float(v), 4) for k, v in extra.items()}, "e2e_ms_p50": float(np.median(lat)),
            "size_mib": len(blob) / 2**20, "latency_ms_p50": float(np.median(lat)),
            "latency_ms_p95": float(np.percentile(lat, 95)), "threads": 1, "fit_s": round(time.time() - t0, 1)}
    return (figures, preds, model) if return_model else (figures, preds)


def tfidf_latency_ms(model, texts: list[str], n_latency: int = 300, seed: int = 0, warmup: int = 30) -> np.ndarray:
    """Per-text latency (ms) of the fitted pipeline, one text at a time (``decision_function([text])``, text
    in -> class scores out), 1 thread, on ``n_latency`` texts sampled with ``seed`` after ``warmup`` calls."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    sample = [texts[i] for i in rng.integers(0, len(texts), size=n_latency + warmup)]
    lat = []
    with threadpool_limits(1):
        for i, t in enumerate(sample):
            s = time.perf_counter()
            model.decision_function([t])
            if i >= warmup:
                lat.append((time.perf_counter() - s) * 1e3)
    return np.asarray(lat)
