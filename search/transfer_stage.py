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
from corpus.augment import REAL, TransferSpec, generate
from corpus.fidelity import VERSION as FIDELITY_VERSION
from corpus.transfer_text import Pools
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
                   pools: Pools = Pools()) -> dict:
    """Generate + label one set (or reuse it); returns its summary. Real-text sets never draw a validation or
    test post, nor a text of the fidelity slice (``corpus.fidelity``) of any of ``pools``' files."""
    out = Experiment(experiment).transfer
    meta_file = out / f"{spec.name}.json"
    pooled = out / f"{spec.name}.pooled.npy"  # absent for sets labelled by an ensemble (no features)
    if reusable(meta_file, out / f"{spec.name}.parquet") and (not pooled.exists() or reusable(pooled)):
        meta = json.loads(meta_file.read_text())
        source = meta.get("source") if isinstance(meta.get("source"), dict) else {}
        if spec.recipe not in REAL or (meta.get("fidelity_held_out") == held_out_tag(pools)
                                       and source.get("sources", []) == list(pools.sources(spec.recipe))):
            log.info("transfer set %s: reusing %s", spec.name, out)
            return meta
        log.info("transfer set %s: built with another fidelity slice or other sources; rebuilding it", spec.name)
    import torch

    from modeling import EncoderClassifier
    from trainables.device import training_device
    from trainables.loop import predict_logits

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    source: dict | str = "training posts only"
    if spec.recipe in REAL:
        file = pools.file(spec.recipe)
        if file is None:
            flag = "--transfer-texts" if spec.recipe == "real" else "--broad-texts"
            raise FileNotFoundError(f"--transfer {spec.recipe}:SIZE needs unlabelled text: pass {flag} FILE "
                                    "(a CSV with a 'text' column)")
        from corpus.fidelity import held_out
        from corpus.transfer_text import sample_transfer_texts

        exclude = set(splits.val.text) | set(splits.test.text) | held_out(pools.files, pools.fidelity_per_source)
        texts, source = sample_transfer_texts(file, spec.size, spec.seed, exclude, pools.sources(spec.recipe),
                                              spec.recipe)
    else:
        texts = generate(splits.train.text.tolist(), spec)
    teacher, tok = EncoderClassifier.load(Experiment(experiment).teacher_model)
    torch.set_num_threads(threads)
    teacher.to(training_device())  # labelling runs on a GPU when this machine has one
    enc = encode_texts(texts, tok, teacher.config.max_length, teacher.config.text_prefix, cache / "encoded")
    logits, pooled = predict_logits(teacher, enc, tok.pad_token_id, progress=f"labelling transfer set {spec.name}",
                                    pooled=True)
    meta = write_transfer_set(out, spec, texts, logits, teacher.config.labels, source=source,
                              labelling_s=round(time.time() - t0, 1), pooled=pooled,
                              held_out=held_out_tag(pools) if spec.recipe in REAL else None)
    log.info("transfer set %s: %d posts labelled in %.0f s", spec.name, spec.size, meta["labelling_s"])
    return meta


def held_out_tag(pools: Pools) -> str:
    """What a real-text set records of the slice it was drawn around (rule version and texts per source)."""
    return f"v{FIDELITY_VERSION}:{pools.fidelity_per_source}"


def write_transfer_set(out: Path, spec: TransferSpec, texts: list[str], logits: np.ndarray, labels,
                       source: dict | str, labelling_s: float | None, pooled: np.ndarray | None = None,
                       labelled_by: str | None = None, held_out: str | None = None) -> dict:
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
            **({"labelled_by": labelled_by} if labelled_by else {}),
            **({"fidelity_held_out": held_out} if held_out is not None else {}), "labelling_s": labelling_s,
            "teacher_argmax_classes": {c: int(n) for c, n in zip(labels, counts)},
            "mean_teacher_confidence": float((prob.max(1) / prob.sum(1)).mean())}
    write_json(out / f"{spec.name}.json", meta)
    return meta


def run_transfer_stage(specs: list[TransferSpec], splits: Splits, experiment: Path, cache: Path,
                       threads: int, features: bool = True, pools: Pools = Pools()) -> dict[str, dict]:
    """Build (or reuse) each transfer set; with ``features`` also the teacher's pooled features on
    the training posts (only feature distillation needs them)."""
    if features:
        from search.teacher_stage import ensure_train_features

        ensure_train_features(splits, experiment, cache, threads)
    return {s.name: build_transfer(s, splits, experiment, cache, threads, pools) for s in specs}


def label_fidelity_slice(pools: Pools, experiment: Path, cache: Path, threads: int) -> dict | None:
    """The fidelity slice of ``pools`` (``corpus.fidelity``) labelled by the teacher, once:
    ``<experiment>/teacher/fidelity.parquet`` (source, text, one logit column per class) and ``fidelity.json``
    (written last). None when the run has no unlabelled pool."""
    from corpus.fidelity import fidelity_slice

    if not pools.files:
        log.info("no unlabelled pool: no fidelity slice (fidelity figures are left out)")
        return None
    layout = Experiment(experiment)
    meta_file, table = layout.fidelity(".json"), layout.fidelity()
    wanted = {"files": [Path(f).name for f in pools.files], "per_source": pools.fidelity_per_source,
              "version": FIDELITY_VERSION}
    if reusable(meta_file, table):
        meta = json.loads(meta_file.read_text())
        if {k: meta.get(k) for k in wanted} == wanted:
            return meta
    import torch

    from modeling import EncoderClassifier
    from trainables.device import training_device
    from trainables.loop import predict_logits

    t0 = time.time()
    df = fidelity_slice(pools.files, pools.fidelity_per_source)
    teacher, tok = EncoderClassifier.load(layout.teacher_model)
    torch.set_num_threads(threads)
    teacher.to(training_device())
    enc = encode_texts(df["text"].tolist(), tok, teacher.config.max_length, teacher.config.text_prefix,
                       cache / "encoded")
    logits = predict_logits(teacher, enc, tok.pad_token_id, progress="labelling the fidelity slice")
    out = df.assign(**{f"logit_{c}": logits[:, i] for i, c in enumerate(teacher.config.labels)})
    layout.teacher.mkdir(parents=True, exist_ok=True)
    with atomic_file(table) as tmp:
        out.to_parquet(tmp, index=False)
    meta = {**wanted, "texts": len(df), "per_source_texts": {k: int(v) for k, v in df["source"].value_counts(
        sort=False).items()}, "labelling_s": round(time.time() - t0, 1)}
    write_json(meta_file, meta)
    log.info("fidelity slice: %d texts of %d sources labelled by the teacher in %.0f s", len(df),
             df["source"].nunique(), meta["labelling_s"])
    return meta


def load_fidelity(experiment: Path):
    """The experiment's teacher-labelled fidelity slice (``modeling.metrics.FidelitySlice``), or None."""
    from modeling.metrics import FidelitySlice

    path = Experiment(experiment).fidelity()
    if not path.is_file():
        return None
    df = pd.read_parquet(path)
    columns = [c for c in df.columns if c.startswith("logit_")]
    return FidelitySlice(df["text"].tolist(), df["source"].tolist(), df[columns].to_numpy(np.float32))
