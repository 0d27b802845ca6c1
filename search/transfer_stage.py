"""Transfer stage: teacher-labelled transfer sets for distillation, computed once per set.

Each set (``corpus.augment.TransferSpec``: recipe, size, seed) is either generated from the
training posts only (``tang``, ``span``, ``join``) or a seeded sample of unlabelled real text
(``real``: ``corpus.transfer_text``), and labelled by the cached teacher; ``<experiment>/teacher/transfer/<name>.parquet``
holds the texts and the teacher's logits, ``<name>.json`` what it cost. Later runs reuse them.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from corpus import Splits, encode_texts
from corpus.cache import reusable
from corpus.augment import TransferSpec, generate
from inference.atomic import atomic_file, write_json
from search.experiment import Experiment

log = logging.getLogger(__name__)


def parse_transfer(text: str, seed: int, n_train: int) -> TransferSpec:
    """``RECIPE:SIZE`` (``tang:25000``) or ``RECIPE:xK`` (K times the training posts, ``join:x2``)
    -> TransferSpec; errors say what is expected."""
    recipe, _, size = text.partition(":")
    try:
        n = round(float(size[1:]) * n_train) if size.startswith("x") else int(size)
        return TransferSpec(recipe, n, seed)
    except ValueError as e:
        raise ValueError(f"--transfer {text!r}: {e}; expected RECIPE:SIZE or RECIPE:xK such as tang:25000 "
                         f"or join:x2") from None


def load_transfer(experiment: Path, spec: TransferSpec) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """(texts, teacher logits, teacher pooled features or None) of a built set; sets labelled by
    a teacher ensemble (``studies/soft_labels.py``) carry no pooled features."""
    path = Experiment(experiment).transfer_file(spec.name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: transfer set {spec.name} was not built; run search/run.py with "
                                f"--transfer {spec.recipe}:{spec.size}")
    df = pd.read_parquet(path)
    pooled_file = Experiment(experiment).transfer_file(spec.name, ".pooled.npy")
    pooled = np.load(pooled_file) if pooled_file.is_file() else None
    columns = [c for c in df.columns if c.startswith("logit_")]  # one per class, in the model's label order
    return df["text"].tolist(), df[columns].to_numpy(np.float32), pooled


def build_transfer(spec: TransferSpec, splits: Splits, experiment: Path, cache: Path, threads: int,
                   transfer_texts: Path | None = None) -> dict:
    """Generate + label one set (or reuse it); returns its summary."""
    out = Experiment(experiment).transfer
    meta_file = out / f"{spec.name}.json"
    pooled = out / f"{spec.name}.pooled.npy"  # absent for sets labelled by an ensemble (no features)
    if reusable(meta_file, out / f"{spec.name}.parquet") and (not pooled.exists() or reusable(pooled)):
        log.info("transfer set %s: reusing %s", spec.name, out)
        return json.loads(meta_file.read_text())
    import torch

    from modeling import EncoderClassifier
    from trainables.device import training_device
    from trainables.loop import predict_logits

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    source: dict | str = "training posts only"
    if spec.recipe == "real":
        if transfer_texts is None:
            raise FileNotFoundError("--transfer real:SIZE needs unlabelled text: pass --transfer-texts FILE "
                                    "(a CSV with a 'text' column)")
        from corpus.transfer_text import sample_transfer_texts

        texts, source = sample_transfer_texts(transfer_texts, spec.size, spec.seed,
                                              set(splits.val.text) | set(splits.test.text))
    else:
        texts = generate(splits.train.text.tolist(), spec)
    teacher, tok = EncoderClassifier.load(Experiment(experiment).teacher_model)
    torch.set_num_threads(threads)
    teacher.to(training_device())  # labelling runs on a GPU when this machine has one
    enc = encode_texts(texts, tok, teacher.config.max_length, teacher.config.text_prefix, cache / "encoded")
    logits, pooled = predict_logits(teacher, enc, tok.pad_token_id, progress=f"labelling transfer set {spec.name}",
                                    pooled=True)
    meta = write_transfer_set(out, spec, texts, logits, teacher.config.labels, source=source,
                              labelling_s=round(time.time() - t0, 1), pooled=pooled)
    log.info("transfer set %s: %d posts labelled in %.0f s", spec.name, spec.size, meta["labelling_s"])
    return meta


def write_transfer_set(out: Path, spec: TransferSpec, texts: list[str], logits: np.ndarray, labels,
                       source: dict | str, labelling_s: float | None, pooled: np.ndarray | None = None,
                       labelled_by: str | None = None) -> dict:
    """The one writer of a transfer set in ``out``: ``<name>.parquet`` (text + one logit column per
    class), ``<name>.pooled.npy`` when the teacher's pooled features are given, and ``<name>.json``
    written last (its presence marks the set complete). Returns the summary it wrote."""
    if pooled is not None:
        with atomic_file(out / f"{spec.name}.pooled.npy") as tmp:
            np.save(tmp, pooled)
    df = pd.DataFrame({"text": texts, **{f"logit_{c}": logits[:, i] for i, c in enumerate(labels)}})
    with atomic_file(out / f"{spec.name}.parquet") as tmp:
        df.to_parquet(tmp, index=False)
    counts = np.bincount(logits.argmax(1), minlength=len(labels))
    prob = np.exp(logits - logits.max(1, keepdims=True))
    meta = {"name": spec.name, "recipe": spec.recipe, "size": spec.size, "seed": spec.seed, "source": source,
            **({"labelled_by": labelled_by} if labelled_by else {}), "labelling_s": labelling_s,
            "teacher_argmax_classes": {c: int(n) for c, n in zip(labels, counts)},
            "mean_teacher_confidence": float((prob.max(1) / prob.sum(1)).mean())}
    write_json(out / f"{spec.name}.json", meta)
    return meta


def run_transfer_stage(specs: list[TransferSpec], splits: Splits, experiment: Path, cache: Path,
                       threads: int, features: bool = True, transfer_texts: Path | None = None) -> dict[str, dict]:
    """Build (or reuse) each transfer set; with ``features`` also the teacher's pooled features on
    the training posts (only feature distillation needs them)."""
    if features:
        from search.teacher_stage import ensure_train_features

        ensure_train_features(splits, experiment, cache, threads)
    return {s.name: build_transfer(s, splits, experiment, cache, threads, transfer_texts) for s in specs}
