"""Before/after timing of the runtime's own code (inference/) on the same model folders: whole public call
``clf(text)``, batch 1, 1 thread, median over 1,000 sampled validation posts after 30 warm-up calls, three rounds.
Run once per code tree, alternating, nothing else running::

    git worktree add ../before 3e18107 && git worktree add ../after 8fa5510
    for i in 1 2; do python results/fused-attention/runtime_ab.py ../before FOLDER...; \
                     python results/fused-attention/runtime_ab.py ../after FOLDER...; done
"""
import sys
import time

import numpy as np

sys.path.insert(0, sys.argv[1])
from corpus import load_splits  # noqa: E402
from inference import SentimentClassifier  # noqa: E402

val = load_splits().val.text.tolist()
rng = np.random.default_rng(0)
texts = [val[i] for i in rng.integers(0, len(val), 1030)]
clfs = [(p, SentimentClassifier.load(p, threads=1)) for p in sys.argv[2:]]
res = {p: [] for p, _ in clfs}
for r in range(3):
    for p, clf in clfs:
        out = []
        for k, t in enumerate(texts):
            t0 = time.perf_counter()
            clf(t)
            if k >= 30:
                out.append(time.perf_counter() - t0)
        res[p].append(np.median(out) * 1e3)
for p, v in res.items():
    print(p, np.round(v, 4), "median", round(float(np.median(v)), 4))
