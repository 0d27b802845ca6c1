"""A user's own labelled texts: CSV, TSV, JSON Lines, Parquet, a Hugging Face ``datasets`` name or a
``save_to_disk`` folder, with any text and label columns and any label set (2 or more classes,
strings or integers).

The label set is read from the training data and ordered (integers numerically, strings
alphabetically; a ``datasets`` ClassLabel keeps its own names and order); that order is the model's
output order everywhere downstream. Without a validation source, validation is a stratified,
seeded split of the training data; without a test source there is no test split and reports say
their figures are validation-only.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from .rusentiment import _stratified_head, sha256_bytes
from .splits import DataError, Splits

log = logging.getLogger(__name__)

READERS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
EMPTY = pd.DataFrame({"text": pd.Series(dtype=str), "label": pd.Series(dtype=np.int64), "source": pd.Series(dtype=str)})


def _read_file(path: Path) -> pd.DataFrame:
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; use .csv, .tsv, .jsonl, .parquet, a "
                        f"datasets save_to_disk folder or a Hugging Face dataset name")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        if kind in ("csv", "tsv"):
            return pd.read_csv(path, sep="," if kind == "csv" else "\t", dtype=str, keep_default_na=False,
                               encoding="utf-8-sig")
        if kind == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_parquet(path)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: bytes are not UTF-8 ({e.reason} at byte {e.start}); re-save the file as UTF-8") from e
    except (ValueError, OSError, pd.errors.ParserError) as e:  # malformed JSON / CSV / Parquet
        raise DataError(f"{path}: cannot read it as {kind} ({str(e).splitlines()[0][:200]})") from e


def _read_datasets(source: str, split: str) -> tuple[pd.DataFrame, list[str] | None]:
    """A ``save_to_disk`` folder or a hub name; returns the split's frame and ClassLabel names if any."""
    import datasets

    path = Path(source).expanduser()
    try:
        ds = datasets.load_from_disk(str(path)) if path.is_dir() else datasets.load_dataset(source)
    except FileNotFoundError as e:
        raise DataError(f"{source}: not a file, not a datasets save_to_disk folder and not a reachable Hugging "
                        f"Face dataset ({str(e).splitlines()[0][:200]})") from e
    except Exception as e:  # the hub's own errors (offline, unknown name) vary by version
        raise DataError(f"{source}: cannot load it with datasets ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200] if str(e) else ''})") from e
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"{source}: has no {split!r} split (it has {', '.join(ds)})")
        ds = ds[split]
    names = None
    for feature in ds.features.values():
        if isinstance(feature, datasets.ClassLabel):
            names = list(feature.names)
    return ds.to_pandas(), names


def read_source(source: str, text_column: str, label_column: str, split: str = "train"
                ) -> tuple[pd.DataFrame, list[str] | None]:
    """(frame with ``text`` and ``label`` (as strings), ClassLabel names or None) from one source."""
    path = Path(source).expanduser()
    if path.is_file():
        raw, names = _read_file(path), None
    elif path.suffix.lower() in READERS:
        raise DataError(f"{source}: file not found")
    else:
        raw, names = _read_datasets(source, split)
    missing = [c for c in (text_column, label_column) if c not in raw.columns]
    if missing:
        flags = {text_column: "--text-column", label_column: "--label-column"}
        raise DataError(f"{source}: missing column(s) {missing}; found {list(raw.columns)}; choose them with "
                        f"{' / '.join(flags[c] for c in missing)}")
    if raw.empty:
        raise DataError(f"{source}: has no rows")
    text = raw[text_column]
    blank = text.isna() | (text.astype(str).str.strip() == "")
    if blank.any():
        i = int(np.flatnonzero(blank.to_numpy())[0])
        raise DataError(f"{source}: row {i + 1} has an empty text in column {text_column!r}; remove the row or fill "
                        f"in its text")
    label = raw[label_column]
    if label.isna().any() or (label.astype(str).str.strip() == "").any():
        i = int(np.flatnonzero((label.isna() | (label.astype(str).str.strip() == "")).to_numpy())[0])
        raise DataError(f"{source}: row {i + 1} has no label in column {label_column!r}")
    if names is not None and pd.api.types.is_integer_dtype(label):
        label = label.map(lambda k: names[int(k)])
    return pd.DataFrame({"text": text.astype(str), "label": label.astype(str).str.strip()}), names


def label_order(values, names: list[str] | None) -> tuple[str, ...]:
    """The model's label order: a ClassLabel's own, else integers numerically, else alphabetically."""
    seen = set(values)
    if names is not None:
        return tuple(n for n in names if n in seen)
    if all(v.lstrip("-").isdigit() for v in seen):
        return tuple(sorted(seen, key=int))
    return tuple(sorted(seen))


def _encode(df: pd.DataFrame, labels: tuple[str, ...], source: str, name: str) -> pd.DataFrame:
    unseen = sorted(set(df.label) - set(labels))
    if unseen:
        raise DataError(f"{source}: {name} labels {unseen[:5]} never occur in the training data (its labels: "
                        f"{', '.join(labels)}); fix the labels or add training examples of them")
    return pd.DataFrame({"text": df.text.to_numpy(), "label": df.label.map(labels.index).astype(np.int64).to_numpy(),
                         "source": name})


def load_table_splits(train: str, val: str | None = None, test: str | None = None, text_column: str = "text",
                      label_column: str = "label", val_fraction: float = 0.1, seed: int = 13,
                      max_train_samples: int | None = None) -> Splits:
    """Splits of a user's own data (see the module docstring)."""
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    train_df, names = read_source(train, text_column, label_column, "train")
    labels = label_order(train_df.label, names)
    if len(labels) < 2:
        raise DataError(f"{train}: every row has the label {labels[0]!r}; a classifier needs 2 or more classes")
    train_df = _encode(train_df, labels, train, "train")
    test_df = _encode(read_source(test, text_column, label_column, "test")[0], labels, test, "test") if test else EMPTY
    if val:
        val_df = _encode(read_source(val, text_column, label_column, "validation")[0], labels, val, "validation")
    else:
        counts = np.bincount(train_df.label, minlength=len(labels))
        n_val = int(np.ceil(val_fraction * len(train_df)))
        if counts.min() < 2 or n_val < len(labels):
            raise DataError(f"{train}: too few posts for a stratified validation split ({len(train_df)} posts, "
                            f"{len(labels)} classes, the smallest with {counts.min()}; it needs 2+ of each class and "
                            f"{val_fraction:.0%} of the posts >= the class count); add data or pass --val FILE")
        train_df, val_df = train_test_split(train_df, test_size=val_fraction, random_state=seed,
                                            stratify=train_df.label)
        val_df = val_df.assign(source="validation")
    train_df, val_df, test_df = (d.reset_index(drop=True) for d in (train_df, val_df, test_df))
    if max_train_samples is not None and max_train_samples < len(train_df):
        train_df = _stratified_head(train_df, max_train_samples, seed)
    checksums = {str(s): sha256_bytes(Path(s).read_bytes()) for s in (train, val, test)
                 if s and Path(s).expanduser().is_file()}
    record = {"kind": "table", "train": _absolute(train), "val": _absolute(val), "test": _absolute(test),
              "text_column": text_column, "label_column": label_column}
    log.info("data: train %d, val %d (%s), test %s; %d classes: %s", len(train_df), len(val_df),
             "from --val" if val else f"{val_fraction:.0%} of train, stratified", len(test_df) if test else "none",
             len(labels), ", ".join(labels))
    if not test:
        log.warning("no test file (--test): every figure will be on validation, and reports say so")
    return Splits(train_df, val_df, test_df, checksums, seed, "given" if val else "train", labels=labels,
                  dataset=record)


def _absolute(source: str | None) -> str | None:
    """Paths recorded absolute (so the experiment reloads from anywhere); hub names as given."""
    if source is None:
        return None
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def splits_from_record(record: dict, data_dir: str | os.PathLike | None = None) -> Splits:
    """The experiment's splits again, from ``data.json`` (``Splits.describe()``)."""
    from .rusentiment import ENV_VAR, load_splits

    dataset = record.get("dataset") or {"kind": "rusentiment"}
    if dataset["kind"] == "table":
        return load_table_splits(dataset["train"], dataset.get("val"), dataset.get("test"), dataset["text_column"],
                                 dataset["label_column"], seed=record["seed"],
                                 max_train_samples=record.get("max_train_samples"))
    recorded = dataset.get("data_dir")  # the folder the run read (older records have none)
    if data_dir is None and not os.environ.get(ENV_VAR) and recorded and Path(recorded).is_dir():
        data_dir = recorded
    return load_splits(data_dir, seed=record["seed"], max_train_samples=record.get("max_train_samples"),
                       val_from=record.get("val_from", "all"))
