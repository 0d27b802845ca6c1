"""Small pure functions the search and the report rest on: the 3-objective Pareto front, the 2-D
fronts of the plots, length-bucketed batches."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.plots import front_2d
from search.pareto import pareto_front
from trainables.loop import length_batches


def _trials(rows):
    return pd.DataFrame(rows, columns=["trial_id", "status", "int8_val_weighted_f1", "e2e_ms_p50", "size_mib"])


def test_pareto_front_keeps_exactly_the_undominated_trials():
    df = _trials([
        ("a", "completed", 0.70, 1.0, 4.0),   # best F1
        ("b", "completed", 0.65, 0.5, 3.0),   # fastest and smallest
        ("c", "completed", 0.64, 0.6, 3.5),   # dominated by b on every objective
        ("d", "stopped_early", 0.66, 0.9, 2.0),  # smallest: kept
        ("e", "error", 0.99, 0.1, 0.1),       # failed trials never enter the front
        ("f", "completed", 0.70, 1.0, 4.0),   # a tie with a: neither dominates the other
        ("g", "completed", np.nan, 0.2, 1.0),  # no int8 result: left out
    ])
    front = pareto_front(df)
    assert sorted(front.trial_id) == ["a", "b", "d", "f"]
    assert list(front.e2e_ms_p50) == sorted(front.e2e_ms_p50)  # sorted by latency


def test_front_2d_is_the_staircase_of_best_y_so_far():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 2.0, np.nan], "y": [0.5, 0.4, 0.7, 0.6, 0.55, 0.9]})
    front = front_2d(df, "x", "y")
    assert list(zip(front.x, front.y)) == [(1.0, 0.5), (2.0, 0.55), (3.0, 0.7)]


def test_length_batches_cover_every_row_once_and_group_similar_lengths():
    lengths = np.random.default_rng(0).integers(1, 200, size=1003)
    for rng in (None, np.random.default_rng(1)):
        batches = length_batches(lengths, 32, rng)
        rows = np.concatenate(batches)
        assert sorted(rows) == list(range(len(lengths)))  # every row exactly once
        assert all(len(b) <= 32 for b in batches)
    sorted_batches = length_batches(lengths, 32, None)  # inference: globally sorted by length
    assert all(lengths[a].max() <= lengths[b].min() for a, b in zip(sorted_batches, sorted_batches[1:]))
    spread = np.mean([np.ptp(lengths[b]) for b in length_batches(lengths, 32, np.random.default_rng(1))])
    assert spread < np.ptp(lengths) / 4  # training batches hold similar lengths (sorted within pools)
    a = length_batches(lengths, 32, np.random.default_rng(5))
    b = length_batches(lengths, 32, np.random.default_rng(5))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # seeded: reproducible


def test_atomic_file_leaves_the_old_file_or_the_new_one_never_half(tmp_path):
    import pytest

    from inference.atomic import atomic_file, write_json

    out = write_json(tmp_path / "run.json", {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_file(out) as tmp:
            tmp.write_text('{"a": 2, "trunc')  # a writer killed half-way ...
            raise RuntimeError("killed")
    assert out.read_text() == '{\n  "a": 1\n}' and list(tmp_path.iterdir()) == [out]  # ... leaves the old file only
    with atomic_file(tmp_path / "x.npy") as tmp:
        assert tmp.suffix == ".npy"  # format-by-suffix writers (np.save, savefig) keep working
        np.save(tmp, np.arange(3))
    assert np.load(tmp_path / "x.npy").tolist() == [0, 1, 2]


def test_atomic_writes_get_the_modes_a_plain_write_gets(tmp_path):
    """tempfile makes 0600 files and 0700 folders; what the tool writes atomically (reports, model folders) gets the
    modes open() and mkdir() give under the process's umask, so another user can read a shared report or serve a
    model folder."""
    import os

    from inference.atomic import atomic_directory, write_json

    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "plain").mkdir()
    with atomic_directory(tmp_path / "model") as d:
        write_json(d / "config.json", {})
    write_json(tmp_path / "report.json", {})
    mode = lambda p: os.stat(p).st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "report.json") == mode(tmp_path / "model" / "config.json") == mode(tmp_path / "plain.txt")
    assert mode(tmp_path / "model") == mode(tmp_path / "plain")


def test_int8_runs_at_ashas_rungs_and_the_last_round():
    from trainables.student import int8_due

    assert [r for r in range(1, 13) if int8_due(r, 12, 3)] == [1, 3, 9, 12]
    assert [r for r in range(1, 5) if int8_due(r, 4, 0)] == [1, 2, 3, 4]
    assert [r for r in range(1, 9) if int8_due(r, 8, 2)] == [1, 2, 4, 8]
    assert [r for r in range(1, 13) if int8_due(r, 12, 3, grace=2)] == [2, 6, 12]


def test_no_package_imports_a_research_tool():
    """studies/ sits beside the product: it imports the stages, never the other way round."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for package in ("analysis", "corpus", "inference", "modeling", "search", "spaces", "teachers", "trainables"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                assert not any(n == "studies" or n.startswith("studies.") for n in names), path


def test_lexical_features_computed_once_equal_the_trials_own():
    from inference.lexical import LexicalSpec, batch_features
    from trainables.student import LexicalPool, StudentData

    train, extra = ["хорошо было", "плохо", "ну так себе, ничего"], ["лучший день!", "", "ужас ужас"]
    data = StudentData(teacher_files={}, train_texts=train, train_labels=np.zeros(3, int), train_logits=np.zeros((3, 2)),
                       val_texts=[], val_labels=np.zeros(0, int), transfer={"real": (extra, np.zeros((3, 2)), None)})
    spec = LexicalSpec(buckets=512)
    direct = LexicalPool(*batch_features(train + extra, spec))
    data.lexical_features((512,))
    for transfer, n in (("real", 6), ("none", 3)):
        pooled = data.lexical_pool(transfer, spec)
        for index in (np.arange(n), np.array([n - 1, 0, 1])):
            for a, b in zip(pooled.batch(index), direct.batch(index)):
                assert np.array_equal(a.numpy(), b.numpy())
    other = LexicalSpec(buckets=512, char_max=3)  # not the precomputed spec: computed afresh, not mixed up
    assert not np.array_equal(data.lexical_pool("none", other).ids, data.lexical_pool("none", spec).ids)


def test_training_attention_is_eager_only_without_attention_dropout_under_cpu_bf16():
    from transformers import BertConfig, BertModel

    from trainables.device import training_attention

    def tiny(p):
        return BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=32, attention_probs_dropout_prob=p), add_pooling_layer=False)

    model = tiny(0.0)
    before = model.config._attn_implementation
    with training_attention(model, bf16=True):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == before  # validation and export keep the model's own
    for p, bf16, device in ((0.1, True, "cpu"), (0.0, False, "cpu"), (0.0, True, "cuda")):
        model = tiny(p)
        with training_attention(model, bf16=bf16, device=device):
            assert model.config._attn_implementation == before


def test_the_report_finds_an_ablation_by_its_record_whatever_its_tag(tmp_path):
    """studies.ablation --tag is free-form: its tables are found by their record ("study": "ablation", or an older
    record's rows_resolved), not by a file name pattern; another study's table of the same shape is not taken."""
    from analysis.report import ablations
    from inference.atomic import write_json
    from search.experiment import Experiment

    layout = Experiment(tmp_path)
    for tag, record in (("fused", {"study": "ablation"}), ("old", {"rows_resolved": {}}), ("fa-x", {"rows": []})):
        pd.DataFrame({"row": ["a", "b"], "int8_val_weighted_f1": [0.5, 0.6]}).to_csv(layout.table(tag), index=False)
        write_json(layout.study_record(tag), record)
    pd.DataFrame({"part": ["student alone"]}).to_csv(layout.table("fused_parts"), index=False)
    assert layout.study_tags("ablation", "rows_resolved") == ["fused", "old"]
    assert [r["study"] for r in ablations(tmp_path)] == ["fused", "fused", "old", "old"]
    assert ablations(tmp_path, "_parts") == [{"part": "student alone", "study": "fused"}]
    assert ablations(tmp_path / "none") is None


def test_weighted_f1_and_the_bootstraps_equal_sklearns_loop(monkeypatch):
    """The numpy weighted F1 is sklearn's f1_score(average="weighted", zero_division=0), also with classes missing
    from either side; the bootstraps are the loop over rng.integers resamples they replace, in chunks or not."""
    from sklearn.metrics import f1_score

    from modeling import metrics

    rng = np.random.default_rng(5)
    for case in range(200):
        n, k = int(rng.integers(1, 40)), int(rng.integers(1, 6))
        y, p = rng.integers(0, k, n), rng.integers(0, k + 1, n)
        if case % 4 == 0:
            p = y.copy()
        assert metrics.weighted_f1(y, p) == pytest.approx(f1_score(y, p, average="weighted", zero_division=0), abs=1e-12)
    y = rng.integers(0, 5, 300)
    a, b = np.where(rng.random(300) < 0.7, y, 0), np.where(rng.random(300) < 0.6, y, 2)

    def loop(fn, n=200, seed=3):
        r = np.random.default_rng(seed)
        return [fn(r.integers(0, len(y), len(y))) for _ in range(n)]

    def wf1(p, i):
        return f1_score(y[i], p[i], average="weighted", zero_division=0)

    scores = loop(lambda i: wf1(a, i))
    diffs = loop(lambda i: wf1(a, i) - wf1(b, i))
    for chunk in (metrics.BOOTSTRAP_CHUNK, 300 * 7):  # one chunk; chunks of 7 resamples (the last one shorter)
        monkeypatch.setattr(metrics, "BOOTSTRAP_CHUNK", chunk)
        assert metrics.bootstrap_interval(y, a, n=200, seed=3) == pytest.approx(tuple(np.percentile(scores, [2.5, 97.5])))
        d = metrics.paired_bootstrap(y, a, b, n=200, seed=3)
        assert (d["low"], d["high"]) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))
        assert d["diff"] == pytest.approx(wf1(a, np.arange(300)) - wf1(b, np.arange(300)))


def test_the_class_bias_is_the_log_of_the_labels_class_mix_for_an_uninformative_answer():
    """With the same answer for every post, the cross-entropy-optimal bias makes softmax(bias) the labels' class
    frequencies: bias = log(frequency) - mean(log(frequency)) (known answer); on an informative answer the bias is
    smaller and centred, and a cross-fitted gain is reported on held-out folds."""
    from modeling.calibration import cross_entropy, cross_fitted_gain, fit_class_bias

    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    b = fit_class_bias(np.zeros((100, 4)), y)
    expected = np.log([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(b, expected - expected.mean(), atol=1e-4)
    rng = np.random.default_rng(0)
    z = np.eye(4)[y] * 2.0 + rng.normal(0, 1, (100, 4)) + np.array([0.0, 0.0, 0.0, -1.5])  # under-predicts class 3
    b = fit_class_bias(z, y)
    assert abs(b.sum()) < 1e-9 and b[3] == b.max()
    assert cross_entropy(b, z, y) < cross_entropy(np.zeros(4), z, y)
    gain = cross_fitted_gain(z, y)
    assert gain["folds"] == 5 and gain["val_cross_entropy_change_cv"] < 0


def test_a_folder_with_a_bad_class_bias_is_refused_naming_the_field(tmp_path):
    import json
    import shutil

    from inference.classifier import DEFAULT_MODEL, ModelFolderError, SentimentClassifier

    folder = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL, folder)
    config = {k: v for k, v in json.loads((folder / "config.json").read_text()).items() if k != "class_bias"}
    (folder / "config.json").write_text(json.dumps(config))
    without = SentimentClassifier.load(folder).logits(["ура"])  # a folder without one loads and answers as before
    for bad in ([0.1, 0.2], [0.0, 0.0, float("nan"), 0.0, 0.0]):
        (folder / "config.json").write_text(json.dumps({**config, "class_bias": {"bias": bad}}))
        with pytest.raises(ModelFolderError, match="class_bias.bias must be 5 finite numbers"):
            SentimentClassifier.load(folder)
    (folder / "config.json").write_text(json.dumps({**config, "class_bias": {"bias": [0.5, 0, 0, 0, -0.5]}}))
    np.testing.assert_allclose(SentimentClassifier.load(folder).logits(["ура"]) - without, [[0.5, 0, 0, 0, -0.5]],
                               atol=1e-6)


def test_a_tune_state_the_kill_cut_short_is_restored_from_its_complete_save_or_refused(tmp_path, monkeypatch):
    """``search/tune_state.py``: the backup callback keeps only a complete save, as one set (the state file and the
    search algorithm's files of the same session); before a restore, a state file cut short by a kill (empty, or
    half a JSON document) and a search-generator file one save behind are both put back from that set, an older
    session's files are never touched, and with no complete save the resume is refused naming the file and what
    to do (Ray Tune would otherwise start the search again and forget the trials)."""
    import json

    import search.tune_state
    from search.tune_state import backup_of, newest_state, repair, state_backup

    # outside a run, this process's Ray session may hold another test's staged save of a folder also named
    # student_trials (seen with seed 20261219): the callback must read this folder's files
    monkeypatch.setattr(search.tune_state, "staged_state", lambda trials: None)
    trials = tmp_path / "student_trials"
    trials.mkdir()
    old = trials / "experiment_state-2026-12-05_04-00-00.json"
    old.write_text(json.dumps({"trial_data": [["old"]]}))
    state = trials / "experiment_state-2026-12-05_04-23-06.json"
    generator = trials / "search_gen_state-2026-12-05_04-23-06.json"
    searcher = trials / "searcher-state-2026-12-05_04-23-06.pkl"
    good = {"trial_data": [["a", "b"]], "runner_data": {}}
    state.write_text(json.dumps(good))
    generator.write_text('{"counter": 2}')
    searcher.write_bytes(b"\x80 searcher")
    assert newest_state(trials) == state
    callback = state_backup(trials)
    assert callback.get_state() is None
    assert backup_of(state) == trials / "complete_state-2026-12-05_04-23-06.zip"
    assert sorted(p.name for p in trials.glob("experiment_state-*.json")) == [old.name, state.name]  # no stray match
    assert sorted(p.name for p in trials.glob("search_gen_state-*.json")) == [generator.name]
    state.write_text(json.dumps({"trial_data": [["a", "b"], ["c"]]})[:20])  # a write cut short: not backed up
    callback.get_state()
    generator.write_text('{"counter": 1}')  # the copy of the generator's file one save behind
    repair(trials)
    assert json.loads(state.read_text()) == good and generator.read_text() == '{"counter": 2}'
    assert searcher.read_bytes() == b"\x80 searcher" and not list(trials.glob(".*"))
    generator.write_text('{"counter": 1}')  # the state whole, the generator behind: the set is put back too
    repair(trials)
    assert generator.read_text() == '{"counter": 2}'
    repair(trials)  # a set equal to the save is left alone
    assert json.loads(state.read_text()) == good
    state.write_text("")
    backup_of(state).unlink()
    with pytest.raises(ValueError, match=r"experiment_state-2026-12-05_04-23-06\.json is cut short \(0 bytes.*"
                                         r"without --resume"):
        repair(trials)
    state.write_text(json.dumps(good))
    repair(trials)  # complete, and no save kept (a search from before the backup): left as it is
    assert json.loads(state.read_text()) == good
    assert json.loads(old.read_text()) == {"trial_data": [["old"]]}


def test_known_library_warnings_are_filtered_and_nothing_else(tmp_path):
    """``trainables/quiet.py``: after ``quiet_known_warnings()`` ONNX Runtime's pre-processing hint (root logger),
    a TracerWarning-worded warning, Optuna's experimental note and torch's advanced-indexing note are gone, while
    another warning and another log line still show; with RUSENTIMENT_KD_WARNINGS=all nothing is filtered."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = """
import logging, sys, warnings
logging.basicConfig(level=logging.INFO, format="%(message)s")
warnings.simplefilter("always")
from trainables.quiet import quiet_known_warnings
print("installed", quiet_known_warnings(), file=sys.stderr)
logging.warning("Please consider to run pre-processing before quantization. Refer to example: ...")
logging.warning("a line of the project's own")
ort_file = "/site-packages/onnxruntime/quantization/quantize.py"  # where ONNX Runtime's quantizer logs from
logging.getLogger().handle(logging.LogRecord("root", logging.INFO, ort_file, 1, "Quantization parameters for tensor", None, None))
warnings.warn("Converting a tensor to a Python boolean might cause the trace to be incorrect.")
warnings.warn("set_metric_names is experimental (supported from v3.2.0). The interface can change.")
warnings.warn("Exporting aten::index operator of advanced indexing in opset 17 is achieved by ...")
warnings.warn("something else entirely")
"""
    root = Path(__file__).resolve().parents[1]
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                           env={k: v for k, v in os.environ.items() if k != "RUSENTIMENT_KD_WARNINGS"})
    assert "installed True" in quiet.stderr and "a line of the project's own" in quiet.stderr
    assert "something else entirely" in quiet.stderr
    for gone in ("pre-processing", "Converting a tensor", "is experimental", "aten::index", "Quantization parameters"):
        assert gone not in quiet.stderr, quiet.stderr
    loud = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                          env={**os.environ, "RUSENTIMENT_KD_WARNINGS": "all"})
    assert "installed False" in loud.stderr
    for shown in ("pre-processing", "Converting a tensor", "is experimental", "aten::index", "Quantization parameters"):
        assert shown in loud.stderr, loud.stderr
