"""Tokenise texts once, cache on disk (Hugging Face ``datasets``), keyed by tokenizer and data."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import uuid
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """Ragged token ids as one flat int32 array plus offsets (cheap to ship through Ray)."""
    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    @classmethod
    def from_rows(cls, rows) -> "Encoded":
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32)
        return cls(ids, offsets)


def text_hash(texts) -> str:
    """A short fingerprint of a sequence of texts (order matters): names token caches and checks that
    texts regenerated elsewhere are the ones that were labelled."""
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]


def tokenizer_fingerprint(tokenizer) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]


def encode_texts(texts, tokenizer, max_length: int, prefix: str = "", cache_dir: Path | None = None) -> Encoded:
    """Token ids (with special tokens, truncated to ``max_length``) for each text.

    With ``cache_dir`` the result is stored as a ``datasets`` Arrow file named by the tokenizer's
    fingerprint, the texts' hash, prefix and max length; a second call loads it. Without it
    the texts are tokenised in memory (``datasets`` not needed; also the fallback where it is not
    installed, e.g. a training machine given only a bundle by ``studies/train_students.py``).
    """
    texts = list(texts)
    if cache_dir is not None and importlib.util.find_spec("datasets") is None:
        cache_dir = None
    if cache_dir is None:
        enc = tokenizer([prefix + t for t in texts], truncation=True, max_length=max_length, add_special_tokens=True)
        return Encoded.from_rows([np.asarray(r, dtype=np.int32) for r in enc["input_ids"]])
    import datasets

    key = text_hash(texts)
    name = f"enc-{tokenizer_fingerprint(tokenizer)}-{key}-{max_length}-{hashlib.sha1(prefix.encode()).hexdigest()[:6]}"

    def tokenise(batch):
        enc = tokenizer([prefix + t for t in batch["text"]], truncation=True, max_length=max_length,
                        add_special_tokens=True)
        return {"input_ids": enc["input_ids"]}

    if cache_dir is not None:
        path = Path(cache_dir) / name
        if path.is_dir():
            try:
                ds = datasets.load_from_disk(str(path))
                return Encoded.from_rows([np.asarray(r, dtype=np.int32) for r in ds["input_ids"]])
            except Exception as e:  # a damaged cache entry (half-written, disk full): rebuild it
                logging.getLogger(__name__).warning("%s is damaged (%s); tokenising again", path, type(e).__name__)
                shutil.rmtree(path, ignore_errors=True)
    ds = datasets.Dataset.from_dict({"text": texts}).map(tokenise, batched=True, batch_size=2000,
                                                          remove_columns=["text"], desc="tokenising")
    if cache_dir is not None:
        # a private temp name: concurrent trials may encode the same texts; the first rename wins
        tmp = Path(cache_dir) / f"{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        ds.save_to_disk(str(tmp))
        try:
            tmp.rename(Path(cache_dir) / name)
        except OSError:
            if not (Path(cache_dir) / name).is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    return Encoded.from_rows([np.asarray(r, dtype=np.int32) for r in ds["input_ids"]])
