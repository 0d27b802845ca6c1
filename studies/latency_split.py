"""Where one text's time goes in ``SentimentClassifier`` (batch 1, 1 thread), and what a length cap
costs and saves:

    python -m studies.latency_split --model inference/models/rusentiment-student \
        --data-dir ../shared/data/rusentiment --out results/latency-split

Medians over ``--posts`` sampled validation posts (after a warm-up), each part timed on its own:
tokenizer, ONNX Runtime, n-gram hashing, the KD lexical table, the gold expert (tf-idf, table,
calibration, fusion) and the whole public call ``clf([text])`` (text in, label out); "the rest"
is the whole minus the parts (Python glue). Then, for each ``--caps`` length, the whole call's
median and the validation weighted F1 with texts truncated there (the model trained at its
config's ``max_length``). Record ``lscpu`` with the figures; compare only within one run.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("studies.latency_split")


def _median_ms(fn, items, warmup: int = 30) -> float:
    for x in items[:warmup]:
        fn(x)
    out = []
    for x in items[warmup:]:
        t0 = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t0)
    return float(np.median(out) * 1e3)


def split(clf, texts: list[str]) -> dict:
    from inference.lexical import features, lexical_logits_of

    parts = {"tokenizer": _median_ms(lambda t: clf.encode([t]), texts)}
    encoded = [clf.encode([t]) for t in texts]
    parts["onnx_runtime"] = _median_ms(lambda e: clf.run(*e), encoded)
    spec = clf.lexical[2] if clf.lexical is not None else (clf.expert.spec if clf.expert is not None else None)
    if spec is not None:
        parts["ngram_hashing"] = _median_ms(lambda t: features(t, spec), texts)
        feats = [features(t, spec) for t in texts]
        if clf.lexical is not None:
            parts["lexical_table"] = _median_ms(lambda f: lexical_logits_of(clf.lexical[0], [f], clf.lexical[1]), feats)
        if clf.fused:
            parts["expert"] = _median_ms(lambda f: clf.expert.log_probs_of([f]), feats)
    parts["whole_call"] = _median_ms(lambda t: clf([t]), texts)
    parts["rest"] = parts["whole_call"] - sum(v for k, v in parts.items() if k != "whole_call")
    return {k: round(v, 4) for k, v in parts.items()}


def main(argv=None) -> int:
    from corpus import load_splits
    from inference import SentimentClassifier
    from modeling import classification_metrics
    from search.provenance import cpu_info

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--posts", type=int, default=600)
    p.add_argument("--caps", type=int, nargs="*", default=[32, 48, 64, 96, 128])
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    from corpus import DataError
    from inference.classifier import ModelFolderError
    from search.cli import run_cli

    def work():
        splits = load_splits(a.data_dir)
        rng = np.random.default_rng(0)
        val = splits.val.text.tolist()
        texts = [val[i] for i in rng.integers(0, len(val), a.posts + 30)]
        clf = SentimentClassifier.load(a.model, threads=1)
        tokens = [len(clf.encode([t])[0][0]) for t in texts]
        result = {"model": Path(a.model).name, "cpu": cpu_info(), "posts": a.posts,
                  "tokens_p50": float(np.median(tokens)), "tokens_p90": float(np.percentile(tokens, 90)),
                  "split_ms_p50": split(clf, texts), "caps": []}
        trained = clf.max_length
        for cap in a.caps:
            clf.tokenizer.enable_truncation(cap)
            wf1 = classification_metrics(splits.val.label.to_numpy(), clf.logits(val, 64).argmax(1))["weighted_f1"]
            whole = round(_median_ms(lambda t: clf([t]), texts), 4)
            result["caps"].append({"max_length": cap, "whole_call_ms_p50": whole, "val_weighted_f1": round(wf1, 4)})
        clf.tokenizer.enable_truncation(trained)
        if a.out:
            from inference.atomic import write_json

            write_json(Path(a.out) / "results.json", result)
        print(json.dumps(result, indent=1))
        return 0

    return run_cli(work, (DataError, ModelFolderError, FileNotFoundError), log)


if __name__ == "__main__":
    raise SystemExit(main())
