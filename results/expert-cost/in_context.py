"""What the gold expert costs inside the shipped student's call, not alone (issue 22, 2026-12-05).

    python results/expert-cost/in_context.py > results/expert-cost/in_context.txt

Medians over 570 validation posts (batch 1, 1 thread, 30 warm-up posts) of: tokenizer + ONNX Runtime alone; that plus
the n-gram hashing; that plus the expert's table and fusion (hashing precomputed); the whole sequence; the public
call. studies/latency_split.py times each part alone, in a loop of its own, where caches stay warm.
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from corpus import load_splits  # noqa: E402
from inference import SentimentClassifier  # noqa: E402
from inference.expert import fuse  # noqa: E402
from inference.lexical import features  # noqa: E402
from search.provenance import cpu_info  # noqa: E402

clf = SentimentClassifier.load()
texts = list(load_splits(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/rusentiment", seed=13).val.text[:600])
spec, w = clf.expert.spec, clf.expert_weight
feats = {t: features(t, spec) for t in texts}
expert_lp = {t: clf.expert.log_probs_of([feats[t]]) for t in texts}


def median_ms(fn):
    for t in texts[:30]:
        fn(t)
    out = []
    for t in texts[30:]:
        t0 = time.perf_counter()
        fn(t)
        out.append(time.perf_counter() - t0)
    return float(np.median(out) * 1e3)


def model(t):
    return clf.run(*clf.encode([t]))


steps = {
    "tokenizer + ONNX Runtime": model,
    "+ n-gram hashing (expert table precomputed)": lambda t: (features(t, spec), fuse(model(t), expert_lp[t], w)),
    "+ expert table and fusion (hashing precomputed)": lambda t: fuse(model(t), clf.expert.log_probs_of([feats[t]]), w),
    "the whole sequence": lambda t: fuse(model(t), clf.expert.log_probs_of([features(t, spec)]), w),
    "the public call clf([text])": lambda t: clf([t]),
    "n-gram hashing alone": lambda t: features(t, spec),
    "expert table and fusion alone": lambda t: fuse(np.zeros((1, 5), np.float32), clf.expert.log_probs_of([feats[t]]), w),
}
print(cpu_info())
for rep in range(2):
    for name, fn in steps.items():
        print(f"round {rep + 1}: {name}: {median_ms(fn):.3f} ms")
