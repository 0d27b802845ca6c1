"""Bad input everywhere: each case ends in one clear line naming what is wrong and how to fix it,
and leaves no partial output. ``python -m tests.test_bad_input`` regenerates docs/bad_input.md
from these very cases."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import sys
from pathlib import Path

import pytest

from corpus.rusentiment import FILES
from tests.fixtures import write_tiny_rusentiment

ROOT = Path(__file__).resolve().parents[1]


class Ctx:
    def __init__(self, root: Path):
        self.root = root
        self.data = write_tiny_rusentiment(root / "data")

    def three_layer_teacher(self) -> Path:
        """A teacher folder with only its config.json: 3 layers of 384 (12 heads of 32)."""
        d = self.root / "three-layer-teacher"
        d.mkdir(exist_ok=True)
        (d / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": 3, "hidden_size": 384,
                                                   "num_attention_heads": 12, "intermediate_size": 1536}))
        return d

    def data_with(self, key: str, content: bytes | None) -> Path:
        d = self.root / f"data-{key}-{hashlib.md5(content or b'').hexdigest()[:6]}"
        shutil.copytree(self.data, d, dirs_exist_ok=True)
        if content is None:
            (d / FILES[key][0]).unlink()
        else:
            (d / FILES[key][0]).write_bytes(content)
        return d


def _capture(fn, argv) -> str:
    """Run a CLI ``main``; check it exits 2 with exactly one error line and no traceback; return that line
    (a log record, or stderr)."""
    records: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.ERROR:
                records.append(record.getMessage())

    handler = Grab()
    logging.getLogger().addHandler(handler)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            try:
                rc = fn(argv)
            except SystemExit as e:
                rc = e.code
    finally:
        logging.getLogger().removeHandler(handler)
    assert rc == 2, f"exit status {rc}, expected 2"
    assert "Traceback" not in err.getvalue(), err.getvalue()
    lines = records or [ln for ln in err.getvalue().splitlines() if "error" in ln.lower()]
    assert len(lines) == 1, f"one error line expected, got {len(lines)}: {lines}"  # the whole message, one line
    return lines[0]


def run_py(ctx: Ctx, *args: str, data: Path | None = None) -> str:
    from search.run import main

    return _capture(main, ["--data-dir", str(data or ctx.data), "--storage", str(ctx.root / "exp"), *args])


def export_cli(ctx: Ctx, *args: str) -> str:
    from analysis.export import main

    return _capture(main, list(args))


def inference_cli(ctx: Ctx, *args: str) -> str:
    from inference.__main__ import main

    return _capture(main, list(args))


def fake_experiment(ctx: Ctx, status: str = "error") -> Path:
    exp = ctx.root / "fake-exp"
    exp.mkdir(exist_ok=True)
    (exp / "data.json").write_text("{}")
    (exp / "trials.csv").write_text(f"trial_id,status,error,model_dir,int8_val_weighted_f1,e2e_ms_p50,size_mib\n"
                                    f"t1,{status},CUDA out of memory,,0.5,1.0,2.0\n")
    return exp


def model_folder(ctx: Ctx, broken: str) -> Path:
    d = ctx.root / f"model-{broken}"
    d.mkdir(exist_ok=True)
    from tokenizers import Tokenizer, models

    if broken != "tokenizer":
        Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(d / "tokenizer.json"))
    (d / "model.onnx").write_bytes(b"not an onnx model" if broken == "onnx" else b"")
    (d / "config.json").write_text("{not json" if broken == "config" else json.dumps(
        {"format": "rusentiment-kd/onnx-classifier", "labels": ["a"], "max_length": 8, "pad_id": 0}))
    return d


def write(ctx: Ctx, name: str, content: bytes) -> Path:
    (ctx.root / name).write_bytes(content)
    return ctx.root / name


CASES = [
    # (case, how it is triggered, expected fragment, function)
    ("data directory missing", "search/run.py --data-dir /nowhere", "does not exist",
     lambda c: run_py(c, data=c.root / "nowhere")),
    ("a data file missing", "rusentiment_test.csv deleted", "rusentiment_test.csv: file not found",
     lambda c: run_py(c, data=c.data_with("test", None))),
    ("empty file", "a 0-byte CSV", "file is empty", lambda c: run_py(c, data=c.data_with("random", b""))),
    ("wrong columns", "header label,body", "missing column(s) ['text']",
     lambda c: run_py(c, data=c.data_with("random", b"label,body\nneutral,hi\n"))),
    ("no rows", "a CSV with a header only", "rusentiment_random_posts.csv: has a header but no rows",
     lambda c: run_py(c, data=c.data_with("random", b"label,text\n"))),
    ("unknown label", "a row labelled happy",
     "rusentiment_random_posts.csv: row 2 (after the header) has unknown label 'happy'",
     lambda c: run_py(c, data=c.data_with("random", b"label,text\nneutral,ok\nhappy,hi\n"))),
    ("empty text", "a whitespace-only text",
     "rusentiment_random_posts.csv: row 2 (after the header) has an empty or whitespace-only text",
     lambda c: run_py(c, data=c.data_with("random", b"label,text\nneutral,ok\nneutral,\"  \"\n"))),
    ("non-UTF-8 bytes", "bytes ff fe in a CSV", "bytes are not UTF-8",
     lambda c: run_py(c, data=c.data_with("random", b"label,text\nneutral,\xff\xfe\n"))),
    ("--trials 0", "search/run.py --trials 0", "expected a positive integer, got 0",
     lambda c: run_py(c, "--trials", "0")),
    ("negative --trials", "search/run.py --trials -3", "expected a positive integer, got -3",
     lambda c: run_py(c, "--trials", "-3")),
    ("unknown --teacher", "--teacher bert-of-my-dreams", "not an existing directory nor a hub id",
     lambda c: run_py(c, "--teacher", "bert-of-my-dreams", "--name", "t1")),
    ("hub id with no network", "--teacher cointegrated/rubert-tiny2 offline", "hub is not reachable",
     lambda c: run_py(c, "--teacher", "cointegrated/rubert-tiny2", "--name", "t2")),
    ("teacher folder without config.json", "--teacher DIR (empty dir)", "has no config.json",
     lambda c: run_py(c, "--teacher", str(Path(c.root / "empty-model").mkdir(exist_ok=True) or c.root / "empty-model"),
                      "--name", "t3")),
    ("--resume with no experiment", "search/run.py --resume --name never-ran", "no student search to resume",
     lambda c: run_py(c, "--resume", "--name", "never-ran")),
    ("experiment from another version", "experiment.json with version 0", "written by another version",
     lambda c: (c.root.joinpath("exp", "old").mkdir(parents=True, exist_ok=True),
                c.root.joinpath("exp", "old", "experiment.json").write_text(
                    '{"format": "rusentiment-kd/experiment", "version": 0}'),
                run_py(c, "--name", "old"))[-1]),
    ("unknown transfer recipe", "--transfer mixup:100", "unknown transfer recipe 'mixup'",
     lambda c: run_py(c, "--transfer", "mixup:100", "--name", "t4")),
    ("malformed transfer size", "--transfer tang:lots", "expected RECIPE:SIZE",
     lambda c: run_py(c, "--transfer", "tang:lots", "--name", "t5")),
    ("hidden size outside the space", "--hidden 100", "hidden sizes [100] are not in the space",
     lambda c: run_py(c, "--hidden", "100", "--name", "t6")),
    ("empty layer range", "--min-layers 3 --max-layers 2", "layers: need min (3) <= max (2)",
     lambda c: run_py(c, "--min-layers", "3", "--max-layers", "2", "--name", "t7")),
    ("more layers than the teacher has", "--teacher (3 layers) --max-layers 4",
     "--max-layers 4: the teacher has 3 layers to cut from",
     lambda c: run_py(c, "--teacher", str(c.three_layer_teacher()), "--max-layers", "4", "--name", "t7t")),
    ("transfer text file missing", "--transfer real:100 --transfer-texts /nowhere.csv",
     "transfer text file not found",
     lambda c: run_py(c, "--transfer", "real:100", "--transfer-texts", str(c.root / "nowhere.csv"), "--name", "t8")),
    ("transfer text file without a text column", "--transfer-texts body.csv", "no 'text' column",
     lambda c: run_py(c, "--transfer", "real:1", "--transfer-texts", str(write(c, "body.csv", b"body\nhi\n")),
                      "--name", "t9")),
    ("unknown initialisation", "--inits distilled", "invalid choice: 'distilled'",
     lambda c: run_py(c, "--inits", "distilled", "--name", "t10")),
    ("lexical branch of one bucket", "--lexical-buckets 1", "use 0 (no branch) or >= 2",
     lambda c: run_py(c, "--lexical-buckets", "1", "--name", "t11")),
    ("gold expert of one bucket", "--expert-buckets 1", "--expert-buckets [1]: bucket counts use 0 (no expert) or >= 2",
     lambda c: run_py(c, "--expert-buckets", "1", "--name", "t11e")),
    ("own data: missing column", "--train t.csv (columns body,label)",
     "missing column(s) ['text']; found ['body', 'label']; choose",
     lambda c: run_py(c, "--train", str(write(c, "t.csv", "body,label\nпривет,a\nпока,b\n".encode())),
                      "--name", "o1")),
    ("own data: one class only", "--train t.csv (every label 'a')", "every row has the label 'a'",
     lambda c: run_py(c, "--train", str(write(c, "one.csv", "text,label\nпривет,a\nпока,a\n".encode())),
                      "--name", "o2")),
    ("own data: test label unseen in training", "--test with a label 'c'", "test labels ['c'] never occur",
     lambda c: run_py(c, "--train", str(write(c, "tr.csv", "text,label\nпривет,a\nпока,b\nага,a\nугу,b\n".encode())),
                      "--test", str(write(c, "te.csv", "text,label\nхм,c\n".encode())), "--name", "o3")),
    ("own data: empty text", "--train with a blank text", "row 2 has an empty text",
     lambda c: run_py(c, "--train", str(write(c, "blank.csv", "text,label\nпривет,a\n ,b\n".encode())),
                      "--name", "o4")),
    ("own data: non-UTF-8 bytes", "--train with bytes ff fe", "bytes are not UTF-8",
     lambda c: run_py(c, "--train", str(write(c, "latin.csv", b"text,label\n\xff\xfe,a\nok,b\n")), "--name", "o7")),
    ("own data: unreadable file", "--train t.parquet (not Parquet)", "cannot read it as parquet",
     lambda c: run_py(c, "--train", str(write(c, "bad.parquet", b"not parquet")), "--name", "o5")),
    ("own data: --test without --train", "--test t.csv alone", "--val and --test go with --train",
     lambda c: run_py(c, "--test", "t.csv", "--name", "o6")),
    ("storage not writable", "--storage under a regular file", "--storage: cannot write to",
     lambda c: _capture(__import__("search.run", fromlist=["main"]).main,
                        ["--data-dir", str(c.data), "--storage", str(write(c, "plain-file", b"x") / "sub"),
                         "--name", "s1"])),
    ("storage nearly full", "--min-free-gib 1e9", "GiB free; a full run needs about 1e+09 GiB",
     lambda c: run_py(c, "--min-free-gib", "1e9", "--name", "s2")),
    ("enqueued trial outside the space", "--enqueue hidden=100", "--enqueue hidden=100: not in the space",
     lambda c: run_py(c, "--enqueue", "hidden=100", "--name", "t12")),
    ("enqueued trial with an unknown parameter", "--enqueue depth=3", "--enqueue 'depth=3': expected NAME=VALUE",
     lambda c: run_py(c, "--enqueue", "depth=3", "--name", "t13")),
    ("export from a folder that is not an experiment", "analysis.export --experiment /tmp", "no trials.csv",
     lambda c: export_cli(c, "--experiment", str(c.root), "--out", str(c.root / "out1"))),
    ("export of a trial that does not exist", "--trial nope", "trial 'nope' is not in",
     lambda c: export_cli(c, "--experiment", str(fake_experiment(c)), "--out", str(c.root / "out2"), "--trial", "nope")),
    ("export of a failed trial", "--trial t1 (status error)", "trial t1 failed (CUDA out of memory)",
     lambda c: export_cli(c, "--experiment", str(fake_experiment(c)), "--out", str(c.root / "out3"), "--trial", "t1")),
    ("no front member within the limits", "--max-size-mib 0.1", "no front member",
     lambda c: export_cli(c, "--experiment", str(fake_experiment(c, "completed")), "--out", str(c.root / "out4"),
                          "--max-size-mib", "0.1")),
    ("missing model folder", "python -m inference --model /nowhere", "no such model folder",
     lambda c: inference_cli(c, "--model", str(c.root / "nowhere"), "hi")),
    ("corrupt config.json", "config.json truncated", "config.json is corrupt",
     lambda c: inference_cli(c, "--model", str(model_folder(c, "config")), "hi")),
    ("corrupt model", "model.onnx is not ONNX", "not a loadable ONNX model",
     lambda c: inference_cli(c, "--model", str(model_folder(c, "onnx")), "hi")),
    ("model folder without its tokenizer", "tokenizer.json deleted", "tokenizer.json is missing",
     lambda c: inference_cli(c, "--model", str(model_folder(c, "tokenizer")), "hi")),
    ("unparseable JSONL input", "--input bad.jsonl", "line 2 is not valid JSON",
     lambda c: inference_cli(c, "--input", str(write(c, "bad.jsonl", b'{"text": "a"}\n{oops\n')), "--model", str(c.root))),
    ("CSV input without a text column", "--input posts.csv", "needs a header with a 'text' column",
     lambda c: inference_cli(c, "--input", str(write(c, "posts.csv", b"body\nhi\n")), "--model", str(c.root))),
    ("non-UTF-8 input file", "--input latin1.txt", "not UTF-8",
     lambda c: inference_cli(c, "--input", str(write(c, "latin1.txt", "caf\xe9".encode("latin-1"))), "--model", str(c.root))),
    ("unknown input type", "--input posts.xlsx", "unknown input type '.xlsx'",
     lambda c: inference_cli(c, "--input", str(write(c, "posts.xlsx", b"x")), "--model", str(c.root))),
    ("report of a folder that is not an experiment", "python -m analysis --experiment /tmp", "is not a finished experiment",
     lambda c: _capture(__import__("analysis.__main__", fromlist=["main"]).main, ["--experiment", str(c.root)])),
]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return Ctx(tmp_path_factory.mktemp("bad-input"))


@pytest.mark.parametrize("case, trigger, fragment, fn", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(ctx, case, trigger, fragment, fn):
    message = fn(ctx)
    assert fragment in message, message
    assert "\n" not in message.strip()
    for out in ("out1", "out2", "out3", "out4"):  # failed exports leave nothing behind
        assert not (ctx.root / out).exists()


def test_the_catalogue_in_the_docs_is_current():
    """docs/bad_input.md is generated from CASES: every case is listed there, and nothing else."""
    rows = [line for line in (ROOT / "docs" / "bad_input.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert [r.split(" | ")[0][2:] for r in rows] == [c[0] for c in CASES], \
        "regenerate it: python -m tests.test_bad_input"


def write_table(path: Path) -> None:
    import tempfile

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as d:
        c = Ctx(Path(d))
        rows = ["| case | trigger | message (exit status 2) |", "|---|---|---|"]
        for case, trigger, _, fn in CASES:
            msg = fn(c).replace(d, "<tmp>").replace("|", "\\|")
            rows.append(f"| {case} | `{trigger}` | {msg} |")
    path.write_text("# Bad input: what each mistake prints\n\nGenerated by `python -m tests.test_bad_input` from the "
                    "cases that `tests/test_bad_input.py` checks.\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    write_table(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/bad_input.md"))
