"""The fidelity slice: unlabelled texts held out of every transfer set, on which a student is compared with
its teacher (argmax agreement, KL divergence; ``modeling.metrics.fidelity``).

Fidelity measures what a student inherits from its teacher *without labels* (Stanton et al. 2021, "Does
knowledge distillation really work?"), so it works on any user's unlabelled text, and on text of domains the
labelled posts never cover. The slice is drawn from each unlabelled pool a run uses (``--transfer-texts``,
``--broad-texts``): ``PER_SOURCE`` texts of every source (at most ``MAX_SHARE`` of it), the ones whose text hashes
lowest (a fixed choice:
the same texts for every run, seed and transfer size, so fidelity figures of different runs compare).
``corpus.transfer_text.sample_transfer_texts`` never draws them: no student trains on the slice, and no
choice of the run's is made on it (it is a report and a tie-break, ``search.pareto.choose``).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

PER_SOURCE = 200  # texts per source (corpus.transfer_text.Pools.fidelity_per_source): an agreement of ~.8 is then
                  # known to about +-.06 (95 %) per source, and the slice of both shared pools costs a trial ~2,800 texts
MAX_SHARE = 0.1   # never more than this share of a source (a small pool of the user's keeps 90 % for training)
VERSION = 1       # a transfer set built before the slice existed (or with another rule) is rebuilt


def text_key(text: str) -> str:
    """The hash that orders texts within a source (stable across Python runs and machines)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def slice_of(pool: pd.DataFrame, per_source: int = PER_SOURCE) -> pd.DataFrame:
    """``per_source`` rows of each source of ``pool`` (``source,text``), at most ``MAX_SHARE`` of the source's
    rows: the lowest-hashing texts; sorted by source, then hash."""
    if per_source <= 0:
        raise ValueError(f"fidelity slice: per_source must be positive, got {per_source}")
    keyed = pool.assign(key=pool["text"].map(text_key)).sort_values(["source", "key"], kind="stable")
    rank = keyed.groupby("source", sort=True).cumcount()
    size = keyed.groupby("source", sort=True)["text"].transform("size")
    keep = rank < np.minimum(per_source, np.floor(size * MAX_SHARE))
    return keyed[keep].drop(columns="key").reset_index(drop=True)


def fidelity_slice(files: list[str | Path], per_source: int = PER_SOURCE) -> pd.DataFrame:
    """The held-out ``source,text`` rows of every pool file (a source named in two files counts once per
    file; the file's sources keep their names)."""
    from .transfer_text import read_transfer_texts

    parts = [slice_of(read_transfer_texts(f), per_source) for f in files]
    if not parts:
        return pd.DataFrame({"source": [], "text": []})
    return pd.concat(parts, ignore_index=True).drop_duplicates("text").reset_index(drop=True)


def held_out(files: list[str | Path], per_source: int = PER_SOURCE) -> set[str]:
    """The texts of the slice: what no transfer set may draw."""
    return set(fidelity_slice(files, per_source)["text"])
