"""The project's cache: where it lives (``cache_root``: ``$RUSENTIMENT_KD_CACHE``, else ``~/.cache/rusentiment-kd``)
and how its files are checked before reuse: a file half-written by a killed process (or a full disk) is found,
logged and rebuilt, never loaded as if it were whole."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def cache_root() -> Path:
    return Path(os.environ.get("RUSENTIMENT_KD_CACHE", Path.home() / ".cache" / "rusentiment-kd")).expanduser().resolve()


def intact(path: Path) -> bool:
    """True when ``path`` exists and reads back whole (by suffix: .npy, .npz, .parquet, .json)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        if path.suffix == ".npy":
            np.load(path, mmap_mode="r")  # checks the header against the file's size
        elif path.suffix == ".npz":
            with np.load(path) as z:
                for name in z.files:
                    z[name]
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_table(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        return True
    except Exception as e:  # numpy, pyarrow and json raise many kinds on truncated files
        log.warning("%s is damaged (%s: %s); rebuilding it", path, type(e).__name__, str(e)[:120])
        return False


def reusable(*paths: Path) -> bool:
    """Every one of ``paths`` is intact (the damaged ones are removed, so they get rebuilt)."""
    ok = True
    for p in paths:
        if Path(p).exists() and not intact(p):
            Path(p).unlink()
            ok = False
        elif not Path(p).exists():
            ok = False
    return ok
