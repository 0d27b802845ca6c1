"""What a Ray worker needs: this package's logging set up, and model folders shipped as bytes (through the
object store, inside a trainable's parameters) and written back."""
from __future__ import annotations

import logging
from pathlib import Path


def setup_worker_logging(level: int = logging.INFO) -> None:
    """Ray workers start with Python logging unconfigured; show this package's progress lines."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("corpus", "teachers", "modeling", "trainables", "search", "inference"):
        logging.getLogger(name).setLevel(level)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a folder, by relative path (to ship a model through Ray's object store)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_folder(files: dict[str, bytes], folder: Path) -> Path:
    for rel, blob in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(blob)
    return folder
