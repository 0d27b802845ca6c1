"""Measure gold-label lexical experts alone and fused with an exported student (issue 22).

    python -m studies.gold_expert --model inference/models/rusentiment-student \
        --data-dir ../shared/data/rusentiment --out results/gold-expert

For each expert variant (n-gram kind x buckets x linear model): cross-fitted C, the expert alone on
validation and test, and fused with the student's log-probabilities at the weight each rule picks on
validation ("nll": minimum fused cross-entropy; "wf1": best fused weighted F1), plus the test figure
at every weight (what an oracle would pick, for reference only), and out of domain (RuSentiTweet's test file
beside the data, or ``--ood-test``) alone and fused at the validation-chosen weight: measured, never selected on.
``--c-values`` fixes the expert's C (each value a variant) instead of choosing it by cross-fitting. ``--silver
EXPERIMENT RECIPE:SIZE`` (a transfer set that experiment's teacher labelled, read by
``search.transfer_stage.load_transfer``) adds a variant of each chars+words expert fitted on the gold training posts
plus those texts at the teacher's argmax label. Variants: "chars+words" (hashed
char n-grams, 2-5 or each of ``--char-ranges``, and word 1-2 n-grams of the text, ``inference.lexical``)
and "subwords" (hashed uni- and bigrams of the student's own token ids).
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("studies.gold_expert")


def subword_features(clf, texts: list[str], buckets: int) -> list[np.ndarray]:
    """Hashed uni- and bigrams of the student's token ids (no special tokens)."""
    out = []
    for e in clf.tokenizer.encode_batch([clf.prefix + t for t in texts]):
        ids = np.asarray(e.ids[1:-1], dtype=np.uint64)
        with np.errstate(over="ignore"):
            bi = ids[:-1] * np.uint64(1_000_003) + ids[1:] + np.uint64(0x9E3779B97F4A7C15)
            h = np.r_[ids, bi] * np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
        out.append((h % np.uint64(buckets)).astype(np.int64))
    return out


def main(argv=None) -> int:
    from corpus import load_splits
    from inference import SentimentClassifier
    from inference.lexical import LexicalSpec, features
    from modeling.expert import ExpertConfig, choose_weight, fit_expert
    from modeling.metrics import classification_metrics
    from inference.expert import fuse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="an exported student folder (its own lexical branch stays on)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--buckets", type=int, nargs="+", default=[1 << 16, 1 << 17])
    p.add_argument("--models", nargs="+", default=["svm", "logreg", "nbsvm"])
    p.add_argument("--kinds", nargs="+", default=["chars+words", "subwords"])
    p.add_argument("--char-ranges", nargs="+", default=["2-5"],
                   help="char n-gram ranges MIN-MAX of the chars+words experts (each a variant), e.g. 2-5 1-5 2-6")
    p.add_argument("--c-values", type=float, nargs="+", default=None,
                   help="fixed C values of the expert's linear model (each a variant); default: cross-fitted from the grid")
    p.add_argument("--ood-test", default=None,
                   help="out-of-domain label,text test file (default: RuSentiTweet's test file beside --data-dir)")
    p.add_argument("--silver", nargs=2, default=None, metavar=("EXPERIMENT", "RECIPE:SIZE"),
                   help="a transfer set an experiment's teacher labelled (e.g. experiments/rusentiment real:40000): "
                        "each chars+words expert is also fitted on the training posts plus these texts at the "
                        "teacher's labels")
    p.add_argument("--out", default=None, help="folder for results.json")
    a = p.parse_args(argv)
    ranges = []
    for r in a.char_ranges:
        lo, _, hi = r.partition("-")
        try:
            ranges.append((LexicalSpec(char_min=int(lo), char_max=int(hi)).char_min, int(hi)))
        except ValueError as e:
            p.error(f"--char-ranges {r!r}: give MIN-MAX with 1 <= MIN <= MAX <= 8, e.g. 2-5 ({e})")
    from corpus import DataError
    from inference.classifier import ModelFolderError
    from search.cli import run_cli

    def work():
        from corpus.rusentiment import load_ood_test, ood_test_path

        splits = load_splits(a.data_dir, seed=a.seed)
        clf = SentimentClassifier.load(a.model, threads=1)
        parts = {"train": splits.train, "val": splits.val, "test": splits.test}
        if (ood_path := ood_test_path(splits, a.ood_test)) is not None and ood_path.is_file():
            parts["ood"] = load_ood_test(ood_path)
        y = {k: v.label.to_numpy() for k, v in parts.items()}
        silver = None
        if a.silver:
            from search.transfer_stage import load_transfer, parse_transfer

            silver_spec = parse_transfer(a.silver[1], a.seed, len(splits.train))
            silver, logits, _ = load_transfer(Path(a.silver[0]), silver_spec)
            y["silver"] = logits.argmax(1)
        # the student's own logits (a folder that carries an expert is not fused twice)
        student = {k: clf.student_logits(parts[k].text.tolist(), 64) for k in parts if k != "train"}
        base = {k: classification_metrics(y[k], student[k].argmax(1))["weighted_f1"] for k in student}
        log.info("student alone: val %.4f test %.4f", base["val"], base["test"])
        rows = []
        variants = [(k, b, r) for k in a.kinds for b in a.buckets for r in (ranges if k != "subwords" else ranges[:1])]
        for kind, buckets, (char_min, char_max) in variants:
            spec = LexicalSpec(buckets=buckets, char_min=char_min, char_max=char_max)
            t0 = time.time()
            if kind == "subwords":
                feats = {k: subword_features(clf, parts[k].text.tolist(), buckets) for k in parts}
            else:
                feats = {k: [features(t, spec) for t in parts[k].text.tolist()] for k in parts}
            feat_s = time.time() - t0
            sources = ["gold"] + (["gold+silver"] if silver is not None and kind != "subwords" else [])
            if len(sources) > 1:
                feats["silver"] = [features(t, spec) for t in silver]
            grids = [(v,) for v in a.c_values] if a.c_values else [ExpertConfig.c_grid]
            for model, source, c_grid in itertools.product(a.models, sources, grids):
                texts, labels, fit_feats = parts["train"].text.tolist(), y["train"], feats["train"]
                if source == "gold+silver":
                    texts, labels = texts + silver, np.r_[labels, y["silver"]]
                    fit_feats = fit_feats + feats["silver"]
                expert, rec = fit_expert(texts, labels, ExpertConfig(buckets=buckets, model=model, seed=a.seed,
                                                                     c_grid=c_grid), fit_feats)
                lp = {k: expert.log_probs_of(feats[k]) for k in student}
                row = {"kind": kind, "source": source, "buckets": buckets, "chars": f"{char_min}-{char_max}", "model": model,
                       "C": rec["C"], "fit_s": rec["fit_s"],
                       "features_s": round(feat_s, 1), "nbytes": expert.nbytes,
                       "alone_val": classification_metrics(y["val"], lp["val"].argmax(1))["weighted_f1"],
                       "alone_test": classification_metrics(y["test"], lp["test"].argmax(1))["weighted_f1"]}
                for rule in ("nll", "wf1"):
                    w, table = choose_weight(student["val"], lp["val"], y["val"], rule)
                    row[f"w_{rule}"] = w
                    row[f"fused_val_{rule}"] = table[w]["wf1"]
                    for k in (("test", "ood") if "ood" in student else ("test",)):
                        row[f"fused_{k}_{rule}"] = classification_metrics(
                            y[k], fuse(student[k], lp[k], w).argmax(1))["weighted_f1"]
                if "ood" in student:
                    row["alone_ood"] = classification_metrics(y["ood"], lp["ood"].argmax(1))["weighted_f1"]
                row["test_by_weight"] = {str(w): round(classification_metrics(
                    y["test"], fuse(student["test"], lp["test"], w).argmax(1))["weighted_f1"], 4)
                    for w in (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)}
                log.info("%s", json.dumps(row))
                rows.append(row)
        result = {"model": Path(a.model).name, **{f"student_{k}": v for k, v in base.items()}, "rows": rows}
        if a.out:
            from inference.atomic import write_json

            write_json(Path(a.out) / "results.json", result)
        print(json.dumps(result, indent=1))
        return 0

    return run_cli(work, (DataError, ModelFolderError, FileNotFoundError, ValueError), log)


if __name__ == "__main__":
    raise SystemExit(main())
