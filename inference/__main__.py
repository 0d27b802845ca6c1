"""``rusentiment-classify [--model DIR] "текст" ...``, ``--input FILE --output FILE``, or texts on standard
input (one per line: ``echo "текст" | rusentiment-classify``, or ``--input -``). Also ``python -m inference``.

Input files: .txt (one text per line), .csv (a ``text`` column), .jsonl (objects with ``text``).
Output: JSON lines, one per text, with the text, label and score (all five scores with --top-k 5).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

from .atomic import write_text
from .classifier import ModelFolderError, SentimentClassifier


class InputFileError(ValueError):
    pass


def read_texts(path: Path) -> list[str]:
    if not path.is_file():
        raise InputFileError(f"{path}: file not found")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputFileError(f"{path}: not UTF-8 ({e.reason} at byte {e.start}); re-save it as UTF-8") from e
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [line for line in raw.splitlines() if line.strip()]
    if suffix == ".csv":
        rows = list(csv.DictReader(raw.splitlines()))
        if not rows or "text" not in rows[0]:
            raise InputFileError(f"{path}: a CSV input needs a header with a 'text' column")
        return [r["text"] or "" for r in rows]
    if suffix == ".jsonl":
        texts = []
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputFileError(f"{path}: line {n} is not valid JSON ({e.msg})") from e
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise InputFileError(f"{path}: line {n} must be an object with a string 'text' field")
            texts.append(obj["text"])
        return texts
    raise InputFileError(f"{path}: unknown input type {suffix!r}; use .txt, .csv or .jsonl")


def read_stdin() -> list[str]:
    """One text per non-empty line of standard input."""
    return [line for line in sys.stdin.read().splitlines() if line.strip()]


def program_name() -> str:
    """The name the user typed: the installed script's, or ``python -m inference``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "python -m inference" if name in ("", "__main__.py", "-c") else name


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    p = argparse.ArgumentParser(prog=program_name(), description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--model", type=Path, default=None,
                   help="exported model folder (default: the shipped student, inference/models/rusentiment-student)")
    p.add_argument("--input", type=Path, help="file of texts (.txt, .csv with 'text', .jsonl with 'text'); "
                   "'-' for standard input (the default when no texts are given and stdin is not a terminal)")
    p.add_argument("--output", type=Path, help="write JSON lines here (default: stdout)")
    p.add_argument("--top-k", type=int, default=None, help="return the k best labels with scores")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    try:
        from_stdin = a.input == Path("-") or (not a.texts and a.input is None and not sys.stdin.isatty())
        texts = list(a.texts) + (read_stdin() if from_stdin else read_texts(a.input) if a.input else [])
        if not texts:
            p.error("give texts as arguments, --input FILE, or lines on standard input")
        clf = SentimentClassifier.load(a.model, threads=a.threads)
        results = clf(texts, top_k=a.top_k, batch_size=a.batch_size, progress=len(texts) >= 5000)
    except (ModelFolderError, InputFileError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    lines = [json.dumps({"text": t, **(r if isinstance(r, dict) else {"top": r})}, ensure_ascii=False)
             for t, r in zip(texts, results)]
    if a.output:
        write_text(a.output, "\n".join(lines) + "\n")
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
