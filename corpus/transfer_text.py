"""Unlabelled real text for teacher-labelled transfer sets (``--transfer real:SIZE``).

The file is a ``source,text`` CSV (``../shared/data/transfer/transfer_texts.csv``: Telegram posts,
forum messages, synthetic VK-style posts, CEDR sentences; its README gives sources and licences).
It is never a test set: the teacher labels a seeded sample of it and students learn those labels.
Texts identical to a validation or test post are dropped, so no evaluated post is distilled.

``python -m corpus.transfer_text fetch --out DIR`` rebuilds that file from its public sources at pinned
commits (``corpus/transfer_sources.py``) for installs without the shared data folder.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .cache import cache_root
from .fidelity import PER_SOURCE
from .rusentiment import sibling_file
from .splits import DataError

log = logging.getLogger(__name__)
FILE_NAME = "transfer_texts.csv"
BROAD_FOLDER, BROAD_FILE = "transfer-broad", "broad_texts.csv"
# the broad pool's sources whose repositories state a licence (MIT, CC BY 4.0; ../shared/data/transfer-broad/README.md)
LICENSED_BROAD_SOURCES = ("wb_marketplace_reviews", "multiwoz_ru_dialogues", "xed_subtitles")


def default_transfer_texts(data_dir: str | Path | None) -> Path | None:
    """``<data dir>/../transfer/transfer_texts.csv`` when it exists (the shared layout), else the pool that
    ``python -m corpus.transfer_text fetch`` rebuilt into the cache (``<cache>/transfer/``), else None."""
    fetched = cache_root() / "transfer" / FILE_NAME
    return sibling_file(data_dir, "transfer", FILE_NAME) or (fetched if fetched.is_file() else None)


@dataclass(frozen=True)
class Pools:
    """The unlabelled text files a run draws its real-text transfer sets from (one per recipe in
    ``corpus.augment.REAL``), and holds its fidelity slice out of (``corpus.fidelity``)."""
    real: str | None = None                # --transfer-texts: the first pool (news, forums, VK-style posts, CEDR)
    broad: str | None = None               # --broad-texts: reviews, tweets, comments, dialogue
    broad_sources: tuple[str, ...] = ()    # the broad pool's sources drawn from (all when empty)
    fidelity_per_source: int = PER_SOURCE  # texts of each source held out as the fidelity slice (corpus.fidelity)

    def file(self, recipe: str) -> str | None:
        return {"real": self.real, "broad": self.broad}.get(recipe)

    def sources(self, recipe: str) -> tuple[str, ...]:
        return self.broad_sources if recipe == "broad" else ()

    @property
    def files(self) -> list[str]:
        """The pool files given, first pool first."""
        return [f for f in (self.real, self.broad) if f]

    def record(self) -> dict:
        """What reports show: file names only (no machine paths)."""
        return {"real": self.real and Path(self.real).name, "broad": self.broad and Path(self.broad).name,
                "broad_sources": list(self.broad_sources) or "all"}


def default_broad_texts(data_dir: str | Path | None) -> Path | None:
    """``<data dir>/../transfer-broad/broad_texts.csv`` when it exists (the shared layout: reviews, tweets,
    comments, dialogue; the domains the first pool lacks), else None."""
    return sibling_file(data_dir, BROAD_FOLDER, BROAD_FILE)


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


def sample_transfer_texts(path: str | Path, size: int, seed: int, exclude: set[str],
                          sources: tuple[str, ...] = (), recipe: str = "real") -> tuple[list[str], dict]:
    """A seeded sample of ``size`` texts not in ``exclude`` (validation and test posts, the fidelity slice
    ``corpus.fidelity``), from ``sources`` only when given; returns the texts and a summary (rows read,
    excluded, drawn per source)."""
    df = read_transfer_texts(path)
    if sources:
        unknown = sorted(set(sources) - set(df["source"]))
        if unknown:
            raise DataError(f"{path}: no source {', '.join(unknown)}; its sources are "
                            f"{', '.join(sorted(df['source'].unique()))}")
        df = df[df["source"].isin(sources)]
    clash = df["text"].isin(exclude)
    pool = df[~clash].reset_index(drop=True)
    if size > len(pool):
        raise DataError(f"--transfer {recipe}:{size}: {path} holds only {len(pool)} usable texts "
                        f"({int(clash.sum())} equal a validation or test post or are held out for fidelity); "
                        f"ask for at most {len(pool)}")
    pick = np.sort(np.random.default_rng(seed).choice(len(pool), size, replace=False))
    chosen = pool.iloc[pick]
    summary = {"file": Path(path).name, "rows_usable": int(len(pool)), "excluded": int(clash.sum()),
               **({"sources": list(sources)} if sources else {}),
               "drawn_per_source": {k: int(v) for k, v in chosen["source"].value_counts().items()}}
    log.info("%s transfer text: %d of %d usable texts from %s (%d left out: a validation/test post or held out "
             "for fidelity)", recipe, size, len(pool), path, int(clash.sum()))
    return chosen["text"].tolist(), summary


def main(argv=None) -> int:
    """``fetch``: rebuild ``transfer_texts.csv`` from its public sources (see ``corpus.transfer_sources``)."""
    from .transfer_sources import EXPECTED_SHA256, fetch

    p = argparse.ArgumentParser(prog="python -m corpus.transfer_text", description=main.__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download the pool's sources at their pinned commits and rebuild "
                                     "transfer_texts.csv")
    f.add_argument("--out", type=Path, default=None,
                   help="folder for transfer_texts.csv, sources.lock.json and the downloaded files "
                        "(default: <cache>/transfer, the cache being $RUSENTIMENT_KD_CACHE or ~/.cache/rusentiment-kd)")
    f.add_argument("--mirror", default=None,
                   help="base URL serving <repo>/<commit>/<path> (default: https://raw.githubusercontent.com)")
    f.add_argument("--reference", type=Path, action="append", default=None, metavar="FILE",
                   help="CSV with a 'text' column whose texts must not enter the pool; repeat for several "
                        "(default: the RuSentiment CSVs of $RUSENTIMENT_DATA_DIR and RuSentiTweet beside them)")
    f.add_argument("--expected-sha256", default=EXPECTED_SHA256,
                   help="digest the rebuilt file is compared with (default: the published pool's)")
    a = p.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        result = fetch(a.out, mirror=a.mirror, references=a.reference, expected_sha256=a.expected_sha256)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
