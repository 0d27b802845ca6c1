"""The gold expert refitted on every labelled post (train + validation) once its C and fusion weight are chosen,
against the expert the search fitted on the training posts, fused with the same students (issue 22):

    python -m studies.expert_refit --models inference/models/rusentiment-student OTHER_FOLDER ... \\
        --data-dir ../shared/data/rusentiment --out results/expert-refit

The fair TF-IDF baseline is refitted on train + validation after its C is chosen on validation; this asks whether
the expert gains the same way. Every folder must carry an expert of the same fit (one search's). The refit keeps
the expert's C (``config.json`` expert.fit.C) and each folder its weight; only the posts differ. Reported for
each folder: RuSentiment test and out-of-domain weighted F1 with the folder's expert and with the refitted one, and
the paired bootstrap of (refit - folder's) over the same posts. Test figures report; they choose nothing.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("studies.expert_refit")


def refit(splits, fit: dict, buckets: int, seed: int):
    """The expert fitted on train + validation with the search's C, model and folds (no C grid)."""
    from modeling.expert import ExpertConfig, fit_expert

    texts = splits.train.text.tolist() + splits.val.text.tolist()
    labels = np.r_[splits.train.label.to_numpy(), splits.val.label.to_numpy()]
    cfg = ExpertConfig(buckets=buckets, model=fit["model"], c_grid=(float(fit["C"]),), folds=int(fit["folds"]), seed=seed)
    return fit_expert(texts, labels, cfg)


def run(models: list[Path], data_dir: str | None, seed: int) -> dict:
    from corpus import load_splits
    from corpus.rusentiment import ood_test_for
    from inference import SentimentClassifier
    from inference.expert import fuse
    from modeling.metrics import paired_bootstrap, weighted_f1
    from search.provenance import cpu_info, git_commit

    t0 = time.time()
    splits = load_splits(data_dir, seed=seed)
    ood = ood_test_for(splits)
    tests = {"test": splits.test, **({"ood": ood} if ood is not None else {})}
    clfs = [SentimentClassifier.load(m) for m in models]
    fits = {json.dumps(c.config["expert"]["fit"], sort_keys=True) if c.expert is not None else None for c in clfs}
    if None in fits or len(fits) != 1:
        raise ValueError(f"--models: every folder needs a gold expert of one fit (one search's); got {len(fits)} fits"
                         + (" and a folder without an expert" if None in fits else ""))
    fit = clfs[0].config["expert"]["fit"]
    if fit.get("train_posts") != len(splits.train):
        raise ValueError(f"the folders' expert was fitted on {fit.get('train_posts')} posts, these splits train on "
                         f"{len(splits.train)}; give the --data-dir and --seed of their search")
    new, record = refit(splits, fit, clfs[0].expert.spec.buckets, seed)
    new_lp = {k: new.log_probs(df.text.tolist()) for k, df in tests.items()}
    old_lp = {k: clfs[0].expert.log_probs(df.text.tolist()) for k, df in tests.items()}
    rows = []
    for folder, clf in zip(models, clfs):
        row = {"model": folder.name, "weight": clf.expert_weight}
        for k, df in tests.items():
            y, student = df.label.to_numpy(), clf.student_logits(df.text.tolist(), 64)
            before = fuse(student, old_lp[k], clf.expert_weight).argmax(1)
            after = fuse(student, new_lp[k], clf.expert_weight).argmax(1)
            d = paired_bootstrap(y, after, before)
            row.update({f"{k}_wf1": weighted_f1(y, before), f"{k}_wf1_refit": weighted_f1(y, after),
                        f"{k}_refit_minus": d["diff"], f"{k}_refit_low": d["low"], f"{k}_refit_high": d["high"]})
        log.info("%s", json.dumps(row))
        rows.append(row)
    alone = {k: {"search_expert": weighted_f1(df.label.to_numpy(), old_lp[k].argmax(1)),
                 "refit_expert": weighted_f1(df.label.to_numpy(), new_lp[k].argmax(1))} for k, df in tests.items()}
    return {"rows": rows, "experts_alone": alone, "refit": record, "search_fit": fit, "seed": seed,
            "machine": cpu_info(), "commit": git_commit(), "wall_s": round(time.time() - t0, 1)}


def main(argv=None) -> int:
    from corpus import DataError
    from inference.classifier import ModelFolderError
    from search.cli import run_cli

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", required=True, type=Path, help="exported folders fused with one search's expert")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=13, help="the split seed of their search")
    p.add_argument("--out", type=Path, default=None, help="folder for results.json")
    a = p.parse_args(argv)

    from studies import finish

    return run_cli(lambda: finish(run(a.models, a.data_dir, a.seed), a.out), (DataError, ModelFolderError, FileNotFoundError, ValueError), log)


if __name__ == "__main__":
    raise SystemExit(main())
