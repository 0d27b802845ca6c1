"""A per-class bias on the fused model's log-probabilities, fitted on validation (prior calibration,
``modeling/calibration.py``, what ``analysis.export --class-bias fit`` adds), for exported students (issue 22):

    python -m studies.class_bias --models FOLDER ... --data-dir ../shared/data/rusentiment --out results/class-bias

For each folder: the bias b (5 numbers, centred) that minimises the validation cross-entropy of softmax(z + b), z the
folder's answer (the student fused with its gold expert); the validation gain cross-fitted (b fitted on 4/5 of the
validation posts, applied to the fifth; ``--repeats`` random fold assignments), and, with b fitted on all of
validation, RuSentiment test and out-of-domain weighted F1 before and after with the paired bootstrap. The class
mixes of the three sets are recorded: a bias moves the decision towards the validation posts' class mix.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("studies.class_bias")


def cross_fitted(z: np.ndarray, y: np.ndarray, repeats: int, seed: int) -> dict:
    """``modeling.calibration.cross_fitted_gain`` averaged over ``repeats`` random 5-fold assignments."""
    from modeling.calibration import cross_fitted_gain

    runs = [cross_fitted_gain(z, y, 5, seed + r) for r in range(repeats)]
    return {"val_wf1_gain_cv": float(np.mean([r["val_wf1_gain_cv"] for r in runs])),
            "val_nll_change_cv": float(np.mean([r["val_cross_entropy_change_cv"] for r in runs]))}


def run(models: list[Path], data_dir: str | None, seed: int, repeats: int) -> dict:
    from corpus import load_splits
    from corpus.rusentiment import ood_test_for
    from inference import SentimentClassifier
    from modeling.calibration import fit_class_bias, log_probs
    from modeling.metrics import paired_bootstrap, weighted_f1
    from search.provenance import cpu_info, git_commit

    t0 = time.time()
    splits = load_splits(data_dir, seed=seed)
    ood = ood_test_for(splits)
    parts = {"val": splits.val, "test": splits.test, **({"ood": ood} if ood is not None else {})}
    y = {k: df.label.to_numpy() for k, df in parts.items()}
    rows = []
    for folder in models:
        clf = SentimentClassifier.load(folder)
        clf.class_bias = None  # the folder's answer before any bias it already carries
        z = {k: clf.logits(df.text.tolist(), 64).astype(np.float64) for k, df in parts.items()}
        z = {k: log_probs(v) for k, v in z.items()}
        b = fit_class_bias(z["val"], y["val"])
        row = {"model": folder.name, "bias": dict(zip(clf.labels, np.round(b, 4).tolist())),
               **cross_fitted(z["val"], y["val"], repeats, seed)}
        for k in parts:
            before, after = z[k].argmax(1), (z[k] + b).argmax(1)
            d = paired_bootstrap(y[k], after, before)
            row.update({f"{k}_wf1": weighted_f1(y[k], before), f"{k}_wf1_bias": weighted_f1(y[k], after),
                        f"{k}_bias_minus": d["diff"], f"{k}_bias_low": d["low"], f"{k}_bias_high": d["high"]})
        log.info("%s", json.dumps(row))
        rows.append(row)
    labels = list(splits.labels)
    mixes = {k: dict(zip(labels, np.round(np.bincount(v, minlength=len(labels)) / len(v), 3).tolist())) for k, v in y.items()}
    return {"rows": rows, "class_mix": mixes, "seed": seed, "repeats": repeats, "machine": cpu_info(),
            "commit": git_commit(), "wall_s": round(time.time() - t0, 1)}


def main(argv=None) -> int:
    from corpus import DataError
    from inference.classifier import ModelFolderError
    from search.cli import run_cli

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", required=True, type=Path, help="exported student folders")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=13, help="the split seed of their search")
    p.add_argument("--repeats", type=int, default=3, help="random 5-fold assignments for the cross-fitted gain")
    p.add_argument("--out", type=Path, default=None, help="folder for results.json")
    a = p.parse_args(argv)

    from studies import finish

    return run_cli(lambda: finish(run(a.models, a.data_dir, a.seed, a.repeats), a.out), (DataError, ModelFolderError, FileNotFoundError, ValueError), log)


if __name__ == "__main__":
    raise SystemExit(main())
