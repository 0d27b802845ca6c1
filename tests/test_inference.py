"""The torch-free runtime: API, CLI, input files, bad folders, and no torch import."""
import json
import subprocess
import sys

import pytest

from inference import SentimentClassifier
from inference.__main__ import main as cli


@pytest.fixture(scope="module")
def exported(tiny_bert, tmp_path_factory):
    from modeling import ClassifierConfig, EncoderClassifier
    from modeling.onnx_export import export_folder
    from teachers import load_encoder, resolve_teacher

    encoder, tok = load_encoder(resolve_teacher(str(tiny_bert), tmp_path_factory.mktemp("c")))
    model = EncoderClassifier(encoder, ClassifierConfig(labels=("negative", "neutral", "positive", "skip", "speech"),
                                                        max_length=16))
    return export_folder(model, tok, tmp_path_factory.mktemp("exp") / "model")


def test_api_single_list_topk_and_odd_texts(exported):
    clf = SentimentClassifier.load(exported)
    one = clf("Отличный день!")
    assert set(one) == {"label", "score"} and one["label"] in clf.labels and 0 < one["score"] <= 1
    texts = ["", "   ", "hello world", "😀😀😀", "очень " * 200, "日本語"]
    many = clf(texts, batch_size=2)
    assert len(many) == len(texts) and all(r["label"] in clf.labels for r in many)
    assert many[4].get("truncated") is True and "truncated" not in many[2]
    top = clf("текст", top_k=5)
    assert [r["label"] for r in top] != [] and len(top) == 5
    assert abs(sum(r["score"] for r in top) - 1) < 1e-6
    assert clf([]) == []


def test_cli_texts_and_files(exported, tmp_path, capsys):
    assert cli(["--model", str(exported), "Привет", "ужасно"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(x)["text"] for x in lines] == ["Привет", "ужасно"]
    (tmp_path / "a.txt").write_text("раз\n\nдва\n", encoding="utf-8")
    (tmp_path / "a.csv").write_text("id,text\n1,раз\n2,\"два, три\"\n", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text('{"text": "раз"}\n{"text": "два"}\n', encoding="utf-8")
    for name in ("a.txt", "a.csv", "a.jsonl"):
        out = tmp_path / (name + ".out")
        assert cli(["--model", str(exported), "--input", str(tmp_path / name), "--output", str(out), "--top-k", "5"]) == 0
        rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        assert len(rows) == 2 and len(rows[0]["top"]) == 5


def test_cli_reads_standard_input_as_a_unix_tool(exported):
    """``echo text | rusentiment-classify``: lines of stdin in, JSON lines out, in order; ``--input -`` too;
    ``--help`` names the program as it was called."""
    run = dict(capture_output=True, text=True, timeout=120, encoding="utf-8")
    piped = subprocess.run([sys.executable, "-m", "inference", "--model", str(exported)],
                           input="Привет\n\nужасно\n", **run)
    assert piped.returncode == 0, piped.stderr
    assert [json.loads(x)["text"] for x in piped.stdout.splitlines()] == ["Привет", "ужасно"]
    dash = subprocess.run([sys.executable, "-m", "inference", "--model", str(exported), "--input", "-", "раз"],
                          input="два\n", **run)
    assert [json.loads(x)["text"] for x in dash.stdout.splitlines()] == ["раз", "два"], dash.stderr
    empty = subprocess.run([sys.executable, "-m", "inference", "--model", str(exported)], input="", **run)
    assert empty.returncode == 2 and "standard input" in empty.stderr
    usage = subprocess.run([sys.executable, "-m", "inference", "--help"], **run).stdout
    assert usage.startswith("usage: python -m inference")


@pytest.mark.parametrize("content, name, fragment", [
    ('{"text": 1}\n', "b.jsonl", "line 1 must be an object with a string 'text'"),
    ("not json\n", "c.jsonl", "line 1 is not valid JSON"),
    ("id,body\n1,x\n", "d.csv", "'text' column"),
    ("x", "e.xlsx", "unknown input type"),
])
def test_cli_bad_input_files(exported, tmp_path, capsys, content, name, fragment):
    (tmp_path / name).write_text(content, encoding="utf-8")
    assert cli(["--model", str(exported), "--input", str(tmp_path / name)]) == 2
    assert fragment in capsys.readouterr().err


def test_inference_imports_no_torch(exported):
    code = ("import sys; from inference import SentimentClassifier; "
            f"r = SentimentClassifier.load({str(exported)!r})('тест'); "
            "assert 'torch' not in sys.modules, 'torch was imported'; print(r['label'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_shipped_default_model_works_without_arguments(capsys):
    from inference import SentimentClassifier
    from inference.__main__ import main
    from inference.classifier import DEFAULT_MODEL

    assert (DEFAULT_MODEL / "model.onnx").stat().st_size < 10 * 2**20
    r = SentimentClassifier.load()("Отличный день!")
    assert r["label"] in ("negative", "neutral", "positive", "skip", "speech") and 0 < r["score"] <= 1
    assert main(["Отличный день!"]) == 0
    assert '"label"' in capsys.readouterr().out


def test_benchmark_of_a_folder_given_as_string(exported):
    from inference.benchmark import benchmark

    r = benchmark(str(exported), ["Отличный день!", "ужасно", ""], n_latency=5, warmup=2, throughput_batches=1)
    assert r["latency_ms_p50"] > 0 and r["latency_ms_p95"] >= r["latency_ms_p50"] and r["n_latency"] == 5
    assert r["size_mib"] > 0 and r["throughput_b32_per_s"] > 0 and r["bench_threads"] == 1
    assert r["e2e_ms_spread"] >= 0 and r["latency_ms_spread"] >= 0  # spread of the per-pass medians


@pytest.mark.slow
def test_versus_tfidf_measures_students_and_the_baseline_in_one_run(exported, tiny_data):
    """studies.versus_tfidf: the student's test figure is what its runtime answers on the test posts, the
    paired difference is against a TF-IDF refitted on train + validation, and every system is timed once per
    round with the per-round ratio to TF-IDF reported."""
    import numpy as np

    from corpus import load_splits
    from modeling import classification_metrics
    from studies import versus_tfidf

    out = versus_tfidf.run([exported], str(tiny_data), None, rounds=2, n_latency=10)
    splits = load_splits(tiny_data)
    row = out["models"]["model"] if "model" in out["models"] else next(iter(out["models"].values()))
    # the study's call (2 threads, batches of 64): an untrained tiny model has near-ties that batch shape can flip
    pred = SentimentClassifier.load(exported, threads=2).logits(splits.test.text.tolist(), 64).argmax(1)
    assert row["test_weighted_f1"] == classification_metrics(splits.test.label.to_numpy(), pred)["weighted_f1"]
    assert out["tfidf"]["fit_posts"] == len(splits.train) + len(splits.val)
    d = row["minus_tfidf"]["test"]
    assert d["low"] <= d["diff"] <= d["high"]
    name = next(iter(out["models"]))
    lat = out["latency"]
    assert len(lat[name]["rounds_ms"]) == len(lat["tfidf"]["rounds_ms"]) == 2
    ratios = np.array(lat[name]["rounds_ms"]) / np.array(lat["tfidf"]["rounds_ms"])
    assert abs(lat[name]["ratio_to_tfidf"] - np.median(ratios)) < 1e-3 * max(1.0, np.median(ratios))
    assert f"| {name}" in versus_tfidf.markdown(out) and out["teacher"] is None
