"""Load, validate and split RuSentiment.

Train = random + preselected posts minus a stratified, seeded validation split for model selection.
By default (``val_from="random"``) validation is carved from the *random* posts only, so that it looks
like the test file (a random sample); every preselected post goes to training. ``val_from="all"`` is
the older split (validation carved from random + preselected). The test file is returned separately
and is only for final reports.
"""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from .cache import cache_root
from .splits import DataError, Splits

log = logging.getLogger(__name__)

LABELS = ("negative", "neutral", "positive", "skip", "speech")
ENV_VAR = "RUSENTIMENT_DATA_DIR"
FILES = {
    "random": ("rusentiment_random_posts.csv", "bfa850dd0548aaea682bcfa3f1106763c4ed1ed8f5341cec75fed61fda8ff2f3"),
    "preselected": ("rusentiment_preselected_posts.csv", "f25f1a73dcb7be5d932cb65b931cf5ed2576c1c983df5fc98c1596ea48d28d88"),
    "test": ("rusentiment_test.csv", "35964a82c1ecf360e6d4a9fe31cf8532225213cf610ba13bb7eacb081446dc10"),
}
SOURCE_URL = "https://raw.githubusercontent.com/strawberrypie/rusentiment/master/Dataset/{name}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(dest: Path) -> Path:
    """Fetch the three CSVs into ``dest``, verifying each sha256; files appear only when complete."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, digest in FILES.values():
        target = dest / name
        if target.is_file() and sha256_bytes(target.read_bytes()) == digest:
            continue
        url = SOURCE_URL.format(name=name)
        log.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                data = r.read()
        except OSError as e:
            raise DataError(
                f"could not download {url} ({e}); pass --data-dir DIR or set {ENV_VAR}=DIR "
                f"to a directory holding {', '.join(n for n, _ in FILES.values())}"
            ) from e
        if sha256_bytes(data) != digest:
            raise DataError(f"{url}: sha256 {sha256_bytes(data)} != expected {digest}; not saved")
        tmp = target.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(target)
    return dest


def resolve_data_dir(data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """The data directory: the flag, else ``$RUSENTIMENT_DATA_DIR``, else a downloaded cache."""
    chosen = data_dir or os.environ.get(ENV_VAR)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_dir():
            src = "--data-dir" if data_dir else f"${ENV_VAR}"
            raise DataError(f"data directory {path} (from {src}) does not exist; point it at the folder "
                            f"holding {FILES['random'][0]} and the other RuSentiment CSVs")
        return path
    if not allow_download:
        raise DataError(f"no data directory: pass --data-dir DIR or set {ENV_VAR}=DIR")
    return download(cache_root() / "data")


OOD_TEST = ("rusentitweet", "rusentitweet_test.csv")  # same five classes, tweets: an out-of-domain test


def sibling_file(data_dir: str | os.PathLike | None, folder: str, name: str) -> Path | None:
    """``<data dir>/../<folder>/<name>`` when it exists (the shared data layout), else None."""
    try:
        root = resolve_data_dir(data_dir, allow_download=False)
    except DataError:
        return None
    path = root.parent / folder / name
    return path if path.is_file() else None


def load_ood_test(path: str | os.PathLike) -> pd.DataFrame:
    """An out-of-domain test file in RuSentiment's ``label,text`` format (for reports only)."""
    return read_labelled_csv(Path(path)).reset_index(drop=True)


def ood_test_path(splits: Splits, given: str | os.PathLike | None = None) -> Path | None:
    """The out-of-domain test file a report or study measures: ``given`` (a ``label,text`` file), else RuSentiTweet's
    test file beside the RuSentiment folder the splits were read from (the one ``data.json`` recorded, so a report
    run without ``--data-dir`` finds it too); None for a user's own data, or when there is no such file."""
    if given:
        return Path(given)
    if splits.dataset.get("kind", "rusentiment") != "rusentiment":
        return None
    return sibling_file(splits.dataset.get("data_dir"), *OOD_TEST)


def ood_test_for(splits: Splits, given: str | os.PathLike | None = None) -> pd.DataFrame | None:
    """The frame of ``ood_test_path`` (None when there is none)."""
    path = ood_test_path(splits, given)
    return load_ood_test(path) if path else None


def read_labelled_csv(path: Path) -> pd.DataFrame:
    """Read one ``label,text`` CSV; any problem raises DataError naming the file and row."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; the data directory must hold {path.name}")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: file is empty; expected a 'label,text' header and rows")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: bytes are not UTF-8 ({e.reason} at byte {e.start}); "
                        f"re-save the file as UTF-8") from e
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, csv.Error) as e:
        raise DataError(f"{path}: not a valid CSV ({e}); expected quoted 'label,text' rows") from e
    missing = [c for c in ("label", "text") if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(df.columns)}, "
                        f"expected a header 'label,text'")
    if df.empty:
        raise DataError(f"{path}: has a header but no rows")
    labels = df["label"].str.strip()
    bad = ~labels.isin(LABELS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: row {i + 1} (after the header) has unknown label {df['label'].iloc[i]!r}; "
                        f"allowed: {', '.join(LABELS)}")
    empty = df["text"].str.strip() == ""
    if empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        raise DataError(f"{path}: row {i + 1} (after the header) has an empty or whitespace-only text; "
                        f"remove the row or fill in its text")
    return pd.DataFrame({"text": df["text"].astype(str), "label": labels.map(LABELS.index).astype(np.int64),
                         "source": path.stem})


VAL_FROM = ("random", "all")


def load_splits(data_dir: str | os.PathLike | None = None, val_fraction: float = 0.1, seed: int = 13,
                max_train_samples: int | None = None, val_from: str = "random") -> Splits:
    """Train (random + preselected minus validation), validation (stratified, seeded) and test.

    ``val_from="random"``: validation is ``val_fraction`` of the random posts (the test file's kind);
    ``"all"``: ``val_fraction`` of random + preselected."""
    if val_from not in VAL_FROM:
        raise DataError(f"--val-from must be one of {', '.join(VAL_FROM)}, got {val_from!r}")
    root = resolve_data_dir(data_dir)
    frames = {key: read_labelled_csv(root / name) for key, (name, _) in FILES.items()}
    checksums = {FILES[k][0]: sha256_bytes((root / FILES[k][0]).read_bytes()) for k in FILES}
    for key, (name, digest) in FILES.items():
        if checksums[name] != digest:
            log.warning("%s: sha256 differs from the published file (%s); results are not comparable",
                        root / name, checksums[name][:12])
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if val_from == "random":
        rest, val = train_test_split(frames["random"], test_size=val_fraction, random_state=seed,
                                     stratify=frames["random"]["label"])
        train = pd.concat([rest, frames["preselected"]], ignore_index=True)
    else:
        pool = pd.concat([frames["random"], frames["preselected"]], ignore_index=True)
        train, val = train_test_split(pool, test_size=val_fraction, random_state=seed, stratify=pool["label"])
    train, val = train.reset_index(drop=True), val.reset_index(drop=True)
    test = frames["test"].reset_index(drop=True)
    if max_train_samples is not None:
        if max_train_samples <= 0:
            raise DataError(f"--max-train-samples must be positive, got {max_train_samples}")
        if max_train_samples < len(train):
            train = _stratified_head(train, max_train_samples, seed)
            val = _stratified_head(val, max(50, int(max_train_samples * val_fraction)), seed)
            test = _stratified_head(test, max(50, int(max_train_samples * val_fraction)), seed)
    log.info("data from %s: train %d, val %d (from %s posts), test %d", root, len(train), len(val),
             "random" if val_from == "random" else "random + preselected", len(test))
    # the folder is recorded so that the report and the export find the same files again (data.json); committed
    # artefacts show only its last two parts (analysis/report.py:portable_data)
    return Splits(train, val, test, checksums, seed, val_from, labels=LABELS,
                  dataset={"kind": "rusentiment", "data_dir": str(root.resolve())})


def _stratified_head(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if n >= len(df):
        return df
    keep, _ = train_test_split(df, train_size=n, random_state=seed, stratify=df["label"])
    return keep.reset_index(drop=True)
