"""Unlabelled real text for teacher-labelled transfer sets (``--transfer real:SIZE``).

The file is a ``source,text`` CSV (``../shared/data/transfer/transfer_texts.csv``: Telegram posts,
forum messages, synthetic VK-style posts, CEDR sentences; its README gives sources and licences).
It is never a test set: the teacher labels a seeded sample of it and students learn those labels.
Texts identical to a validation or test post are dropped, so no evaluated post is distilled.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .rusentiment import DataError, sibling_file

log = logging.getLogger(__name__)
FILE_NAME = "transfer_texts.csv"


def default_transfer_texts(data_dir: str | Path | None) -> Path | None:
    """``<data dir>/../transfer/transfer_texts.csv`` when it exists (the shared layout), else None."""
    return sibling_file(data_dir, "transfer", FILE_NAME)


def read_transfer_texts(path: str | Path) -> pd.DataFrame:
    """``source,text`` rows (``source`` optional), stripped, de-duplicated, empty texts dropped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: transfer text file not found; pass --transfer-texts FILE (a CSV with a "
                        f"'text' column) or leave 'real' out of --transfer")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable UTF-8 CSV ({e}); expected 'source,text' rows") from e
    if "text" not in df.columns:
        raise DataError(f"{path}: no 'text' column (found {list(df.columns)}); expected a header 'source,text'")
    if "source" not in df.columns:
        df["source"] = path.stem
    df["text"] = df["text"].str.strip()
    df = df[df["text"] != ""].drop_duplicates("text").reset_index(drop=True)
    return df[["source", "text"]]


def sample_transfer_texts(path: str | Path, size: int, seed: int, exclude: set[str]) -> tuple[list[str], dict]:
    """A seeded sample of ``size`` texts not in ``exclude`` (validation and test posts); returns the
    texts and a summary (rows read, excluded, drawn per source)."""
    df = read_transfer_texts(path)
    clash = df["text"].isin(exclude)
    pool = df[~clash].reset_index(drop=True)
    if size > len(pool):
        raise DataError(f"--transfer real:{size}: {path} holds only {len(pool)} usable texts "
                        f"({int(clash.sum())} equal a validation or test post); ask for at most {len(pool)}")
    pick = np.sort(np.random.default_rng(seed).choice(len(pool), size, replace=False))
    chosen = pool.iloc[pick]
    summary = {"file": Path(path).name, "rows_usable": int(len(pool)), "excluded_eval_duplicates": int(clash.sum()),
               "drawn_per_source": {k: int(v) for k, v in chosen["source"].value_counts().items()}}
    log.info("real transfer text: %d of %d usable texts from %s (%d dropped: equal to a validation/test post)",
             size, len(pool), path, int(clash.sum()))
    return chosen["text"].tolist(), summary
