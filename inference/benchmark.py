"""The one CPU benchmark: batch-1 latency (median, p95) over real texts with 1 intra-op thread —
of the model alone (``latency_ms_*``) and end to end, text in, logits out (``e2e_ms_*``: tokenisation,
the lexical branch's n-gram hashing if any, the model) — tokenisation timed apart, batch-32
throughput, on-disk size."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from .classifier import LEXICAL_FILE, MODEL_FILE, TOKENIZER_FILE, SentimentClassifier
from .expert import EXPERT_FILE


def folder_size_mib(path: Path) -> float:
    """What a deployment ships: the graph, the tokenizer, the lexical table and the gold expert if any."""
    return sum((path / n).stat().st_size for n in (MODEL_FILE, TOKENIZER_FILE, LEXICAL_FILE, EXPERT_FILE)
               if (path / n).is_file()) / 2**20


POOL = 2000  # the benchmark samples from the first POOL non-empty texts it is given (the validation posts)


def default_warmup(n_latency: int) -> int:
    """Untimed calls before the timed ones: 30, or fewer for a smaller benchmark (``--bench-texts``)."""
    return min(30, n_latency)


def bench_sample(texts: list[str], n_latency: int, warmup: int, seed: int = 0) -> tuple[list[str], str]:
    """The texts every benchmark of one experiment times, whoever calls it (a search trial, the report, an export,
    the TF-IDF baseline): ``warmup + n_latency`` draws, seeded, from the first ``POOL`` non-empty ``texts``, and a
    short fingerprint of the timed ones (``bench_sha``: equal fingerprints, the same texts timed)."""
    pool = [t for t in texts[:POOL] if t.strip()] or ["Привет"]
    rng = np.random.default_rng(seed)
    sample = [pool[i] for i in rng.integers(0, len(pool), size=n_latency + warmup)]
    return sample, hashlib.sha256("\n".join(sample[warmup:]).encode()).hexdigest()[:12]


def pass_spread(ms: np.ndarray, passes: int) -> float:
    """Relative spread of the medians of ``passes`` consecutive slices of the timings:
    (max - min) / overall median — how much one pass's figure could have moved."""
    medians = [float(np.median(c)) for c in np.array_split(ms, passes) if len(c)]
    return float((max(medians) - min(medians)) / max(float(np.median(ms)), 1e-12))


def benchmark(path: Path, texts: list[str], n_latency: int = 300, warmup: int | None = None,
              throughput_batches: int | None = None, threads: int = 1, passes: int = 3) -> dict:
    """Benchmark an exported model folder (a path or a string)."""
    path = Path(path)
    clf = SentimentClassifier.load(path, threads=threads)
    return benchmark_runner(clf, texts, folder_size_mib(path), n_latency, warmup, throughput_batches, threads, passes)


def benchmark_runner(clf, texts: list[str], size_mib: float, n_latency: int = 300, warmup: int | None = None,
                     throughput_batches: int | None = None, threads: int = 1, passes: int = 3) -> dict:
    """The timing protocol for anything with ``encode(texts) -> (ids, mask)``, ``run(ids, mask)``
    and ``logits(texts, batch_size)`` (an exported folder, or a torch model wrapped the same way);
    the caller has already limited the runtime to ``threads``. Medians are over all ``n_latency``
    texts; ``*_spread`` is the relative spread of the medians of ``passes`` consecutive slices. By default ``warmup``
    is min(30, ``n_latency``) texts and the throughput runs ``n_latency // 30`` batches of 32 (at least one), so
    a smaller ``n_latency`` (``--bench-texts``) shortens every part of the benchmark."""
    warmup = default_warmup(n_latency) if warmup is None else warmup
    throughput_batches = max(1, n_latency // 30) if throughput_batches is None else throughput_batches
    sample, sha = bench_sample(texts, n_latency, warmup)
    encoded = [clf.encode([t]) for t in sample]
    for ids, mask in encoded[:warmup]:
        clf.run(ids, mask)
    lat = []
    for ids, mask in encoded[warmup:]:
        t0 = time.perf_counter()
        clf.run(ids, mask)
        lat.append(time.perf_counter() - t0)
    tok = []
    for t in sample[warmup:]:
        t0 = time.perf_counter()
        clf.encode([t])
        tok.append(time.perf_counter() - t0)
    e2e = []
    for t in sample[warmup:]:
        t0 = time.perf_counter()
        clf.logits([t], batch_size=1)
        e2e.append(time.perf_counter() - t0)
    batches = [sample[i * 32 % len(sample):][:32] for i in range(throughput_batches)]
    batches = [b for b in batches if len(b) == 32] or [sample[:32]]
    clf.logits(batches[0])
    t0 = time.perf_counter()
    n = 0
    for b in batches:
        clf.logits(b, batch_size=32)
        n += len(b)
    thr = n / (time.perf_counter() - t0)
    lat_ms, e2e_ms = np.array(lat) * 1e3, np.array(e2e) * 1e3
    return {"latency_ms_p50": float(np.median(lat_ms)), "latency_ms_p95": float(np.percentile(lat_ms, 95)),
            "latency_ms_spread": pass_spread(lat_ms, passes),
            "e2e_ms_p50": float(np.median(e2e_ms)), "e2e_ms_p95": float(np.percentile(e2e_ms, 95)),
            "e2e_ms_spread": pass_spread(e2e_ms, passes),
            "tokenize_ms_p50": float(np.median(tok) * 1e3), "throughput_b32_per_s": float(thr),
            "size_mib": size_mib, "bench_threads": threads, "n_latency": len(lat), "bench_sha": sha}
