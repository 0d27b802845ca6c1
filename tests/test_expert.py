"""The gold-label lexical expert: fit, export, runtime fusion, weight choice, the fair baseline
(offline, tiny data and models built in code)."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from corpus import LABELS
from tests.fixtures import tiny_texts


@pytest.fixture(scope="module")
def labelled():
    """A small learnable task: each class has its own words (tests.fixtures.tiny_texts)."""
    rng = random.Random(3)
    texts, labels = [], []
    for k, label in enumerate(LABELS):
        for t in tiny_texts(label, 60, rng):
            texts.append(t)
            labels.append(k)
    order = np.random.default_rng(0).permutation(len(texts))
    return [texts[i] for i in order], np.array(labels)[order]


@pytest.fixture(scope="module")
def expert(labelled):
    from modeling.expert import ExpertConfig, fit_expert

    texts, labels = labelled
    return fit_expert(texts[:200], labels[:200], ExpertConfig(buckets=4096, folds=3, c_grid=(0.3, 1.0)))


def test_tfidf_matches_scikit_learn_on_the_same_counts(labelled):
    """Known answer: the expert's tf-idf (training side and runtime row) equals scikit-learn's
    TfidfTransformer(sublinear_tf=True, smooth_idf=True) on the same hashed counts."""
    from sklearn.feature_extraction.text import TfidfTransformer

    from inference.expert import tfidf_row
    from inference.lexical import LexicalSpec, features
    from modeling.expert import count_matrix, idf_of, tfidf

    texts = labelled[0][:50]
    spec = LexicalSpec(buckets=512)
    counts = count_matrix(texts, spec)
    ref = TfidfTransformer(sublinear_tf=True, smooth_idf=True).fit(counts)
    np.testing.assert_allclose(idf_of(counts)[np.unique(counts.indices)], ref.idf_[np.unique(counts.indices)], rtol=1e-5)
    np.testing.assert_allclose(tfidf(counts, idf_of(counts)).toarray(), ref.transform(counts).toarray(), atol=1e-5)
    u, x = tfidf_row(features(texts[7], spec), idf_of(counts))
    np.testing.assert_allclose(x, ref.transform(counts[7]).toarray()[0, u], atol=1e-5)


def test_the_folded_runtime_path_computes_the_documented_map(expert, labelled):
    """``log_probs_of`` reads a table folded once (calibration into the rows, idf beside them); it equals the map the
    docstring writes: log_softmax(scores_of(ids) @ calib + calib_bias), for texts with and without n-grams; and
    ``unique_counts`` equals numpy's unique with counts, repeats and the empty case included."""
    from inference.expert import log_softmax, unique_counts
    from inference.lexical import features

    gold = expert[0]
    texts = labelled[0][:40] + ["", "!!!"]
    ids = [features(t, gold.spec) for t in texts]
    ref = np.stack([log_softmax(gold.scores_of(i) @ gold.calib + gold.calib_bias) for i in ids])
    np.testing.assert_allclose(gold.log_probs_of(ids), ref, atol=1e-5)
    for i in ids + [np.array([5, 5, 5, 2, 9, 2]), np.zeros(0, np.int64)]:
        want = np.unique(i, return_counts=True)
        got = unique_counts(i)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_expert_learns_the_gold_labels_and_its_int8_table_keeps_the_answers(expert, labelled):
    """The fitted expert beats the majority class by far on held-out posts, and its int8 table gives
    (almost) the same scores as the float model scikit-learn fitted."""
    from inference.lexical import features
    from modeling.expert import count_matrix, tfidf

    gold, record = expert
    texts, labels = labelled
    held_x, held_y = texts[200:], labels[200:]
    pred = gold.log_probs(held_x).argmax(1)
    majority = np.bincount(held_y).max() / len(held_y)
    assert (pred == held_y).mean() > majority + 0.3
    assert record["C"] in (0.3, 1.0) and set(record["cv_weighted_f1"]) == {"0.3", "1.0"}
    # int8 vs float: the dequantized table's scores stay within a few % of the table's range
    x = tfidf(count_matrix(held_x, gold.spec), gold.idf)
    float_table = gold.table.astype(np.float32) * gold.scale
    ref = x @ float_table + gold.bias
    got = np.stack([gold.scores_of(features(t, gold.spec)) for t in held_x])
    np.testing.assert_allclose(got, ref, atol=1e-4)
    probs = np.exp(gold.log_probs(held_x))
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_choose_weight_finds_zero_for_a_useless_expert_and_more_for_a_useful_one():
    from modeling.expert import choose_weight

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    student = rng.normal(0, 1, (600, 3))
    student[np.arange(600), y] += 1.5                      # a fair student
    useless = np.log(np.full((600, 3), 1 / 3))             # an expert that knows nothing
    w, table = choose_weight(student, useless, y, "nll")
    assert w == 0.0 and table[0.0]["nll"] <= table[0.5]["nll"]
    good = rng.normal(0, 1, (600, 3))
    good[np.arange(600), y] += 2.5                         # an expert that errs independently
    good = good - np.log(np.exp(good).sum(1, keepdims=True))
    w, table = choose_weight(student, good, y, "nll")
    assert w > 0.2 and table[w]["wf1"] > table[0.0]["wf1"]
    with pytest.raises(ValueError, match="weight rule"):
        choose_weight(student, good, y, "accuracy")


def _student(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    from modeling import ClassifierConfig, EncoderClassifier

    torch.manual_seed(0)
    model = EncoderClassifier(AutoModel.from_pretrained(tiny_bert, add_pooling_layer=False),
                              ClassifierConfig(labels=LABELS, pooling="mean", max_length=64)).eval()
    torch.nn.init.normal_(model.head.weight, std=0.5)
    return model, AutoTokenizer.from_pretrained(tiny_bert)


def test_runtime_fuses_like_the_training_side_and_a_folder_without_an_expert_loads(tiny_bert, expert, labelled,
                                                                                   tmp_path):
    """The exported folder's answer equals (1 - w) log_softmax(torch student) + w log p_expert, with w
    written by set_weight; the same student exported without an expert still loads and answers alone."""
    from inference import SentimentClassifier
    from inference.expert import EXPERT_FILE, log_softmax
    from modeling.expert import set_weight
    from modeling.onnx_export import export_folder

    model, tok = _student(tiny_bert)
    gold, record = expert
    texts = labelled[0][200:230] + ["", "!!!"]
    enc = tok([model.config.text_prefix + t for t in texts], padding=True, truncation=True, max_length=64,
              return_tensors="pt")
    with torch.no_grad():
        student = model(enc["input_ids"], enc["attention_mask"]).numpy()
    folder = export_folder(model, tok, tmp_path / "fused", quantize=False, expert=gold,
                           expert_info={"fit": record})
    assert (folder / EXPERT_FILE).is_file()
    clf = SentimentClassifier.load(folder)
    assert not clf.fused  # weight 0 until the trial chooses one
    np.testing.assert_allclose(clf.logits(texts), student, rtol=1e-4, atol=1e-4)
    set_weight(folder, 0.4)
    clf = SentimentClassifier.load(folder)
    assert clf.fused and json.loads((folder / "config.json").read_text())["expert"]["weight"] == 0.4
    expected = 0.6 * log_softmax(student) + 0.4 * gold.log_probs(texts)
    np.testing.assert_allclose(clf.logits(texts), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(clf.student_logits(texts), student, rtol=1e-4, atol=1e-4)
    answer = clf(texts[0], top_k=5)
    assert answer[0]["label"] == LABELS[int(expected[0].argmax())]
    plain = SentimentClassifier.load(export_folder(model, tok, tmp_path / "plain", quantize=False))
    assert plain.expert is None and not plain.fused
    np.testing.assert_allclose(plain.logits(texts), student, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        set_weight(folder, 1.5)


def test_a_damaged_expert_file_is_named(tiny_bert, expert, tmp_path):
    from inference import ModelFolderError, SentimentClassifier
    from modeling.expert import set_weight
    from modeling.onnx_export import export_folder

    model, tok = _student(tiny_bert)
    folder = export_folder(model, tok, tmp_path / "f", quantize=False, expert=expert[0])
    set_weight(folder, 0.3)
    (folder / "expert.npz").write_bytes(b"not an npz")
    with pytest.raises(ModelFolderError, match="expert.npz"):
        SentimentClassifier.load(folder)


def test_expert_runtime_imports_no_torch(expert, tmp_path):
    expert[0].save(tmp_path / "expert.npz")
    code = ("import sys; from inference.expert import GoldExpert; from inference.lexical import LexicalSpec; "
            f"e = GoldExpert.load({str(tmp_path / 'expert.npz')!r}, LexicalSpec(buckets=4096)); "
            "p = e.log_probs(['привет мир']); assert p.shape == (1, 5); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_baseline_is_refitted_on_train_and_validation(tiny_data):
    """C chosen by cross-validation, then the pipeline refitted on train + validation: the model the report
    measures has seen every labelled post (its vocabulary holds a word found only in validation)."""
    from analysis.baseline import tfidf_baseline
    from corpus import load_splits

    splits = load_splits(tiny_data, seed=5)
    marker = "валидационноеслово"
    for i in (0, 1):  # twice: the word vectorizer keeps words seen in 2+ posts
        splits.val.loc[i, "text"] = f"{marker} {splits.val.text[i]}"
    figures, preds, model = tfidf_baseline(splits, n_latency=5, return_model=True)
    assert figures["fit_posts"] == len(splits.train) + len(splits.val)
    word_vocab = model.steps[0][1].transformer_list[1][1].vocabulary_
    assert marker in word_vocab
    assert figures["C"] in {float(c) for c in figures["cv_weighted_f1"]} and len(preds["test"]) == len(splits.test)


def test_a_trial_with_the_expert_and_half_an_epoch_grace(tiny_bert, labelled, expert, tmp_path):
    """fit_student (the search's trainable, outside Ray) with a gold expert and ASHA grace 2: no int8
    export before the first rung (round 1 reports fp32 only), then every int8 round reports the fused
    figures, the student's own, a weight in [0, 1] and its gate that the exported folder carries and applies,
    and the folder's fidelity on a held-out slice (the same keys, NaN, before the first rung)."""
    from inference import SentimentClassifier
    from modeling import classification_metrics
    from modeling.expert import GATE_SLOPES
    from modeling.metrics import FidelitySlice, folder_fidelity
    from spaces.student import StudentConfig
    from trainables.worker import folder_bytes
    from trainables.student import FolderReporter, StudentData, fit_student

    model, tok = _student(tiny_bert)
    model.save(tmp_path / "teacher", tok)
    texts, labels = labelled
    gold, record = expert
    other = [f"{t} совсем другие слова {i}" for i, t in enumerate(texts[:60])]  # rarer n-grams than the posts
    data = StudentData(teacher_files=folder_bytes(tmp_path / "teacher"), train_texts=texts[:200],
                       train_labels=labels[:200], train_logits=np.eye(5, dtype=np.float32)[labels[:200]] * 4,
                       val_texts=texts[200:], val_labels=labels[200:],
                       experts={4096: (gold, gold.log_probs(texts[200:]), record)},
                       fidelity=FidelitySlice(other[:30], ["a"] * 10 + ["b"] * 20,
                                              np.eye(5, dtype=np.float32)[labels[:30]] * 4),
                       gate_texts=(other[30:], np.eye(5, dtype=np.float32)[labels[30:60]] * 4))
    cfg = StudentConfig(layers=1, hidden=64, heads=2, ffn=128, vocab=0, init="random", epochs=1, evals_per_epoch=4,
                        ptq_rungs=3, ptq_grace=2, expert_buckets=4096, threads=1, batch_size=32, max_length=64)
    fit_student(cfg, data, FolderReporter(tmp_path / "run"))
    rounds = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]
    # before the first rung: the int8 and benchmark keys are there (Ray's CSV logger fixes the columns from the
    # first result), and NaN: nothing was measured
    assert np.isnan(rounds[0]["int8_val_weighted_f1"]) and np.isnan(rounds[0]["e2e_ms_p50"])
    assert set(rounds[0]) == set(rounds[1]) and not np.isnan(rounds[1]["int8_val_weighted_f1"])
    assert [r["int8_round"] for r in rounds[1:]] == [2, 2, 4]
    last = rounds[-1]
    assert 0 <= last["expert_weight"] <= 1 and "int8_student_val_weighted_f1" in last and last["e2e_ms_p50"] > 0
    folder = tmp_path / "run" / "checkpoint" / "model"
    clf = SentimentClassifier.load(folder)
    assert clf.expert_weight == last["expert_weight"]
    assert last["gate_slope"] in GATE_SLOPES and (clf.gate is None) == (last["expert_weight"] == 0)
    assert clf.gate is None or clf.gate.slope == last["gate_slope"]
    wf1 = classification_metrics(labels[200:], clf.logits(texts[200:]).argmax(1))["weighted_f1"]
    assert wf1 == pytest.approx(last["int8_val_weighted_f1"])  # the folder answers what the trial reported
    again = folder_fidelity(folder, data.fidelity)  # and its fidelity is the folder's, as shipped
    assert {k: last[k] for k in ("fidelity_agreement", "fidelity_kl", "fidelity_a", "fidelity_b")} == pytest.approx(
        {k: again[k] for k in ("fidelity_agreement", "fidelity_kl", "fidelity_a", "fidelity_b")})
    assert np.isnan(rounds[0]["fidelity_agreement"]) and last["fidelity_s"] > 0
    majority = np.bincount(labels[200:]).max() / len(labels[200:])
    assert last["int8_val_accuracy"] > majority + 0.2  # a learnable task: the fused model beats the majority class


def test_a_teacher_fused_with_the_expert_becomes_a_new_experiments_targets(tiny_data, tmp_path):
    """studies.expert_teacher: the new experiment's targets are (1 - w) log_softmax(teacher) + w expert (the
    formula written out here), w is the one recorded, the training posts get out-of-fold expert
    log-probabilities (not the full expert's), transfer texts are kept, and the source's files are untouched
    although the new experiment hard-links them."""
    import pandas as pd

    from corpus import load_splits
    from corpus.augment import TransferSpec
    from modeling.expert import ExpertConfig, fit_expert
    from search.transfer_stage import write_transfer_set
    from studies import expert_teacher

    splits = load_splits(tiny_data, seed=13)
    src = tmp_path / "source"
    (src / "teacher" / "model").mkdir(parents=True)
    (src / "data.json").write_text(json.dumps({**splits.describe(), "max_train_samples": None}))
    (src / "teacher" / "teacher.json").write_text("{}")
    rng = np.random.default_rng(0)
    teacher = {s: rng.normal(size=(len(getattr(splits, s)), 5)).astype(np.float32) for s in ("train", "val", "test")}
    for s, z in teacher.items():
        z[np.arange(len(z)), getattr(splits, s).label.to_numpy()] += 1.0  # a teacher better than chance
        np.save(src / "teacher" / f"logits_{s}.npy", z)
    spec = TransferSpec("real", 30, 13)
    pool = splits.train.text.tolist()[:30]
    pool_logits = rng.normal(size=(30, 5)).astype(np.float32)
    (src / "teacher" / "transfer").mkdir()
    write_transfer_set(src / "teacher" / "transfer", spec, pool, pool_logits, splits.labels, source="test", labelling_s=1.0)
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}

    summary = expert_teacher.install(src, tmp_path / "fused", str(tiny_data), ["real:30"], buckets=4096)

    w = summary["weight"]
    assert 0.0 <= w <= 0.9 and summary["rule"] == "nll on validation"
    expert, _ = fit_expert(splits.train.text.tolist(), splits.train.label.to_numpy(), ExpertConfig(buckets=4096))

    def log_softmax(x):
        x = x - x.max(1, keepdims=True)
        return x - np.log(np.exp(x).sum(1, keepdims=True))

    tdir = tmp_path / "fused" / "teacher"
    for s in ("val", "test"):
        want = (1 - w) * log_softmax(teacher[s]) + w * expert.log_probs(getattr(splits, s).text.tolist())
        np.testing.assert_allclose(np.load(tdir / f"logits_{s}.npy"), want, atol=1e-5)
    if w > 0:  # the training posts' expert part is cross-fitted, so it differs from the full expert's
        full = (1 - w) * log_softmax(teacher["train"]) + w * expert.log_probs(splits.train.text.tolist())
        assert not np.allclose(np.load(tdir / "logits_train.npy"), full, atol=1e-3)
    df = pd.read_parquet(tdir / "transfer" / f"{spec.name}.parquet")
    assert df["text"].tolist() == pool
    want = (1 - w) * log_softmax(pool_logits) + w * expert.log_probs(pool)
    np.testing.assert_allclose(df[[f"logit_{c}" for c in splits.labels]].to_numpy(), want, atol=1e-5)
    assert json.loads((tdir / "teacher.json").read_text())["soft_labels"]["weight"] == w
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before  # the source is untouched
    with pytest.raises(FileExistsError):
        expert_teacher.install(src, tmp_path / "fused", str(tiny_data), ["real:30"], buckets=4096)


def test_log_softmax_is_stable_for_large_logits():
    """Known answers: log_softmax([1000, 0, -1000]) is [0, -1000, -2000] and a row far below it keeps its own
    answer: each row's maximum is subtracted before exp, so nothing overflows or underflows to -inf; fusing with
    weight 0 gives the student's own."""
    from inference.expert import fuse, log_softmax

    out = log_softmax(np.array([[1000.0, 0.0, -1000.0], [-2000.0, -2001.0, -2002.0]]))  # each row's own maximum
    assert np.all(np.isfinite(out))
    second = -np.log(1 + np.exp(-1.0) + np.exp(-2.0)) - np.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(out, [[0.0, -1000.0, -2000.0], second], atol=1e-9)
    np.testing.assert_allclose(fuse(np.array([[1000.0, 0.0, -1000.0]]), np.zeros((1, 3)), 0.0), out[:1], atol=1e-3)


@pytest.mark.slow  # trains a student to the end (fit_student)
def test_fused_training_puts_the_fused_model_into_the_loss(tiny_bert, labelled, tmp_path):
    """fused_weight > 0: the KD loss is taken on (1 - w) log_softmax(student) + w * expert log-probs, with the
    expert's cross-fitted log-probabilities for the labelled posts (what it says of posts it was not fitted on);
    the student still trains to a folder whose fused answers beat the majority class. Without an expert, or
    without the pool's log-probabilities, it is one clear error."""
    import torch.nn.functional as F

    from modeling.expert import ExpertConfig, fit_expert_cross_fitted
    from spaces.student import StudentConfig, StudentSpace, sample_student
    from trainables.distill import kd_loss
    from trainables.loop import collate
    from trainables.worker import folder_bytes
    from modeling.metrics import FidelitySlice
    from trainables.student import FolderReporter, StudentData, StudentRun, fit_student

    texts, labels = labelled
    gold, record, oof = fit_expert_cross_fitted(texts[:200], labels[:200],
                                                ExpertConfig(buckets=4096, folds=3, c_grid=(0.3,)))
    assert oof.shape == (200, 5) and np.allclose(np.exp(oof).sum(1), 1, atol=1e-4)
    model, tok = _student(tiny_bert)
    model.save(tmp_path / "teacher", tok)
    other = [f"{t} совсем другие слова {i}" for i, t in enumerate(texts[:60])]  # rarer n-grams than the posts
    data = StudentData(teacher_files=folder_bytes(tmp_path / "teacher"), train_texts=texts[:200],
                       train_labels=labels[:200], train_logits=np.eye(5, dtype=np.float32)[labels[:200]] * 4,
                       val_texts=texts[200:], val_labels=labels[200:],
                       experts={4096: (gold, gold.log_probs(texts[200:]), record)},
                       fidelity=FidelitySlice(other[:30], ["a"] * 10 + ["b"] * 20,
                                              np.eye(5, dtype=np.float32)[labels[:30]] * 4),
                       gate_texts=(other[30:], np.eye(5, dtype=np.float32)[labels[30:60]] * 4))
    cfg = StudentConfig(layers=1, hidden=64, heads=2, ffn=128, vocab=0, init="random", epochs=1, evals_per_epoch=2,
                        expert_buckets=4096, fused_weight=0.5, threads=1, batch_size=32, max_length=64, bf16="off")
    with pytest.raises(ValueError, match="fused_weight > 0 needs the expert's log-probabilities"):
        StudentRun.build(cfg, data)
    data.expert_pool[4096] = {"train": oof}
    run = StudentRun.build(cfg, data)
    index = run.next_batch()
    ids, mask = collate(run.train, index, tok.pad_token_id)
    with torch.no_grad():
        z = run.model(ids, mask).float()
    w = cfg.fused_weight
    fused = (1 - w) * F.log_softmax(z, -1) + w * torch.as_tensor(oof[index])
    want = kd_loss(fused, run.t_logits[index], run.labels[index], cfg.kd_alpha, cfg.kd_temperature)
    alone = kd_loss(z, run.t_logits[index], run.labels[index], cfg.kd_alpha, cfg.kd_temperature)
    run.model.train()
    got = run.step(index)
    assert got == pytest.approx(float(want), rel=1e-4) and abs(float(want) - float(alone)) > 1e-3
    # trained to the end: the folder's fused answers (at the weight chosen on validation) beat the majority class
    fit_student(cfg, data, FolderReporter(tmp_path / "run"))
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["int8_val_accuracy"] > np.bincount(labels[200:]).max() / len(labels[200:]) + 0.2
    with pytest.raises(ValueError, match="needs expert_buckets > 0"):
        StudentConfig(fused_weight=0.5)
    # the search draws a fused weight only for students with an expert
    import optuna

    space = StudentSpace(expert_buckets=(0, 4096), fused_weight=(0.0, 0.5))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = set()
    for _ in range(30):
        t = study.ask()
        fixed = sample_student(t, space)  # first: t.params is a copy taken when read
        point = {**t.params, **fixed}
        drawn.add((point["expert_buckets"], point["fused_weight"]))
        assert ("fused_weight" in t.params) == (point["expert_buckets"] > 0)
        study.tell(t, 0.0)
    assert drawn == {(0, 0.0), (4096, 0.0), (4096, 0.5)}


def test_nbsvm_scales_features_by_naive_bayes_ratios_and_folds_them_into_the_table(labelled):
    """NBSVM (expert model "nbsvm"): the log-count ratios on a hand-computed case, the folded weights give the same
    scores as each one-vs-rest LinearSVC on the scaled features, and the expert learns the tiny task."""
    from scipy import sparse
    from sklearn.svm import LinearSVC

    from modeling.expert import ExpertConfig, fit_expert, fit_linear, nb_ratios

    x = sparse.csr_matrix(np.array([[1.0, 0.0], [2.0, 1.0], [0.0, 3.0]], np.float32))
    y = np.array([0, 0, 1])
    # class 0: p = 1 + (3, 1) = (4, 2), q = 1 + (0, 3) = (1, 4); r = log(p/6) - log(q/5)
    want = np.log(np.array([4, 2]) / 6) - np.log(np.array([1, 4]) / 5)
    np.testing.assert_allclose(nb_ratios(x, y, 2)[:, 0], want, rtol=1e-5)
    np.testing.assert_allclose(nb_ratios(x, y, 2)[:, 1], -want, rtol=1e-5)  # two classes: the mirror image
    texts, labels = labelled
    from modeling.expert import count_matrix, idf_of, tfidf
    from inference.lexical import LexicalSpec

    counts = count_matrix(texts[:200], LexicalSpec(buckets=1024))
    xt = tfidf(counts, idf_of(counts))
    w, b = fit_linear("nbsvm", 1.0, 0, xt, labels[:200], 5)
    r = nb_ratios(xt, labels[:200], 5)
    for k in (0, 3):
        ref = LinearSVC(C=1.0, random_state=0).fit(sparse.csr_matrix(xt.multiply(r[:, k])), labels[:200] == k)
        np.testing.assert_allclose(xt @ w[:, k] + b[k], ref.decision_function(xt.multiply(r[:, k])), atol=1e-4)
    gold, record = fit_expert(texts[:200], labels[:200], ExpertConfig(buckets=4096, model="nbsvm", folds=3,
                                                                      c_grid=(0.3, 1.0)))
    majority = np.bincount(labels[200:]).max() / len(labels[200:])
    assert (gold.log_probs(texts[200:]).argmax(1) == labels[200:]).mean() > majority + 0.3
    assert record["model"] == "nbsvm"


def test_the_experts_onnx_nodes_compute_the_numpy_expert(expert, labelled):
    """``studies.expert_in_graph`` (the measured in-graph expert): its ONNX nodes give the numpy expert's
    log-probabilities, one text at a time and for a whole batch, for texts with no words, one-letter words, words
    past 64 code points, repeats, punctuation and capitals; and the same spec with char 1-3 n-grams and no bigrams."""
    import onnxruntime as ort

    from inference.lexical import LexicalSpec
    from studies.expert_in_graph import expert_model, graph_inputs

    gold = expert[0]
    texts = labelled[0][:30] + ["", "   ", "a", "Ab", "я " + "ж" * 70 + " ok", "Да да ДА!!! :)", "\t_\n", "12 345"]
    specs = [gold.spec, LexicalSpec(buckets=gold.spec.buckets, char_min=1, char_max=3, word_bigrams=False)]
    for spec in specs:
        g = type(gold)(spec=spec, table=gold.table, scale=gold.scale, idf=gold.idf, bias=gold.bias,
                       calib=gold.calib, calib_bias=gold.calib_bias)
        session = ort.InferenceSession(expert_model(g).SerializeToString(), providers=["CPUExecutionProvider"])
        want = g.log_probs(texts)
        one = np.concatenate([session.run(None, graph_inputs([t]))[0] for t in texts])
        batch = session.run(None, graph_inputs(texts))[0]
        np.testing.assert_allclose(one, want, atol=2e-5)
        np.testing.assert_allclose(batch, want, atol=2e-5)
