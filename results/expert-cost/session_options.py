"""ONNX Runtime session settings for the batch-1 call (issue 22, item 3: "the cheapest session settings").

    python results/expert-cost/session_options.py [FOLDER] > results/expert-cost/session_options.txt

The folder's public call ``clf(text)`` with its session built by each variant of settings (the runtime's own:
1 intra-op thread, 1 inter-op thread, all graph optimizations), the variants alternated per text (the order
rotates), medians over 570 validation posts after 30 warm-up posts, three rounds. Each variant's answers are
checked equal to the runtime's.
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import onnxruntime as ort  # noqa: E402

from corpus import load_splits  # noqa: E402
from inference import SentimentClassifier  # noqa: E402
from inference.classifier import MODEL_FILE  # noqa: E402
from search.provenance import cpu_info  # noqa: E402


def options(**change):
    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = 1, 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for key, value in change.items():
        if key.startswith("entry:"):
            o.add_session_config_entry(key[len("entry:"):], value)
        else:
            setattr(o, key, value)
    return o


VARIANTS = {
    "runtime's settings": {},
    "no memory arena": {"enable_cpu_mem_arena": False},
    "no memory pattern": {"enable_mem_pattern": False},
    "no spinning": {"entry:session.intra_op.allow_spinning": "0"},
    "denormals as zero": {"entry:session.set_denormal_as_zero": "1"},
    "extended optimizations only": {"graph_optimization_level": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED},
}

folder = Path(sys.argv[1] if len(sys.argv) > 1 else "inference/models/rusentiment-student")
texts = list(load_splits("../shared/data/rusentiment", seed=13).val.text[:600])
print(cpu_info(), f"onnxruntime {ort.__version__}", folder.name)
clfs = {}
for name, change in VARIANTS.items():
    clf = SentimentClassifier.load(folder)
    clf.session = ort.InferenceSession(str(folder / MODEL_FILE), options(**change), providers=["CPUExecutionProvider"])
    clfs[name] = clf
ref = clfs["runtime's settings"].logits(texts[:200], batch_size=1)
for name, clf in clfs.items():
    print(f"{name}: max |answer - runtime's| {np.abs(clf.logits(texts[:200], batch_size=1) - ref).max():.1e}")
names = list(clfs)
for rnd in range(3):
    times = {k: [] for k in names}
    for i, t in enumerate(texts):
        for name in names[i % len(names):] + names[:i % len(names)]:
            t0 = time.perf_counter()
            clfs[name](t)
            if i >= 30:
                times[name].append(time.perf_counter() - t0)
    print(f"round {rnd + 1}: " + "; ".join(f"{k} {np.median(v) * 1e3:.3f}" for k, v in times.items()) + " (ms)")
