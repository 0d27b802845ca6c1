"""Every file and folder the tool writes goes through here: fill a temporary sibling, then rename it
into place, so a reader never sees half a file and a killed process leaves no partial output."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

# the process's umask, read once at import: tempfile makes its files 0600 and folders 0700, while what the tool
# writes should get the modes a plain open() / mkdir() gives (a model folder served by another user, a shared report)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_directory(out: Path):
    """Yields a temporary directory; on success it replaces ``out``, on error it is removed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        yield tmp
        tmp.chmod(0o777 & ~_UMASK)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(out: Path):
    """Yields a temporary path beside ``out`` (same suffix, so writers that pick a format by suffix
    work); on success it replaces ``out`` in one rename, on error it is removed. Readers never see
    a half-written file, and a killed writer leaves only a ``.tmp`` sibling behind."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=out.stem + ".", suffix=".tmp" + out.suffix, dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.exists():
            tmp.chmod(0o666 & ~_UMASK)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(out: Path, text: str) -> Path:
    with atomic_file(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(out)


def write_json(out: Path, obj) -> Path:
    """JSON (indented, UTF-8, non-JSON values through ``str``), written atomically."""
    return write_text(out, json.dumps(obj, indent=2, ensure_ascii=False, default=str))
