"""Breadth (issue 35): fidelity to the teacher on a held-out unlabelled slice, the broad transfer pool, the
expert's text-dependent weight, and the choice that sees fidelity (offline, tiny data and models built in code)."""
from __future__ import annotations

import csv
import json
import random
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from tests.fixtures import FILLER, WORDS, tiny_texts, with_teacher


def test_fidelity_equals_a_hand_computed_case():
    """Agreement and KL(teacher || student) of three texts from two sources, worked by hand."""
    from modeling.metrics import fidelity

    teacher = np.log(np.array([[0.5, 0.5 - 1e-9, 1e-9], [0.2, 0.3, 0.5], [0.9, 0.05, 0.05]]))
    student = np.log(np.array([[0.25, 0.5, 0.25], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]))
    f = fidelity(student + 7.0, teacher, ["a", "b", "a"])  # logits: any shift is the same distribution
    # argmaxes: teacher 0, 2, 0; student 1, 2, 2 -> only the second agrees
    assert f["fidelity_agreement"] == pytest.approx(1 / 3)
    assert f["fidelity_a"] == 0.0 and f["fidelity_b"] == 1.0
    kl = [0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.5), 0.0,
          0.9 * np.log(0.9 / 0.1) + 0.05 * np.log(0.05 / 0.1) + 0.05 * np.log(0.05 / 0.8)]
    assert f["fidelity_kl"] == pytest.approx(np.mean(kl), abs=1e-6)
    assert list(f) == ["fidelity_agreement", "fidelity_kl", "fidelity_a", "fidelity_b"]


def test_the_slice_is_a_fixed_choice_per_source():
    """PER_SOURCE texts of each source, the same ones whatever the rows' order; never more than MAX_SHARE of a
    source."""
    from corpus.fidelity import slice_of

    rows = [("x", f"текст {i}") for i in range(500)] + [("y", f"другой {i}") for i in range(35)]
    pool = pd.DataFrame(rows, columns=["source", "text"])
    a = slice_of(pool, 10)
    b = slice_of(pool.sample(frac=1, random_state=1), 10)
    assert a.equals(b) and a.source.value_counts().to_dict() == {"x": 10, "y": 3}  # y: at most 10 % of 35
    with pytest.raises(ValueError, match="per_source"):
        slice_of(pool, 0)


def _pool(path, sources: dict[str, int], seed: int):
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["source", "text"])
        for source, n in sources.items():
            for i, text in enumerate(tiny_texts(rng.choice(list(WORDS)), n, rng)):
                w.writerow([source, f"{text} {source} {i} {rng.choice(FILLER)}"])
    return path


def test_the_held_out_slice_never_reaches_a_transfer_set(tiny_teacher, tiny_data, tmp_path):
    """Real-text sets drawn from both pools with every usable text hold none of the slice's texts (the
    test fails if one of them is in a set); one more text than usable fails with a message that says why; the
    slice is labelled by the teacher once and loads back with its sources."""
    from corpus import DataError, load_splits
    from corpus.augment import TransferSpec
    from corpus.cache import cache_root
    from corpus.fidelity import fidelity_slice
    from corpus.transfer_text import Pools
    from search.transfer_stage import build_transfer, label_fidelity_slice, load_fidelity

    experiment = with_teacher(tiny_teacher, tmp_path / "exp", "fid")
    splits = load_splits(str(tiny_data), seed=13)
    pools = Pools(real=str(_pool(tmp_path / "real.csv", {"news": 100, "forum": 90}, 1)),
                  broad=str(_pool(tmp_path / "broad.csv", {"tweets": 100, "reviews": 120}, 2)))
    slice_ = fidelity_slice(pools.files, per_source=8)
    held = set(slice_.text)
    assert len(held) == 32
    pools = replace(pools, fidelity_per_source=8)  # the run's default is 200: these pools are small
    for recipe, usable in (("real", 190 - 16), ("broad", 220 - 16)):
        meta = build_transfer(TransferSpec(recipe, usable, 13), splits, experiment, cache_root(), 1, pools)
        texts = set(pd.read_parquet(experiment / "teacher" / "transfer" / f"{recipe}-{usable}-s13.parquet").text)
        assert len(texts) == usable and not texts & held, texts & held
        assert meta["fidelity_held_out"] == "v1:8"
        with pytest.raises(DataError, match="held out for fidelity"):
            build_transfer(TransferSpec(recipe, usable + 1, 13), splits, experiment, cache_root(), 1, pools)
    meta = label_fidelity_slice(pools, experiment, cache_root(), 1)
    assert meta["texts"] == 32 and meta["per_source_texts"] == {"forum": 8, "news": 8, "reviews": 8, "tweets": 8}
    loaded = load_fidelity(experiment)
    assert set(loaded.texts) == held and loaded.names == ["forum", "news", "reviews", "tweets"]
    assert loaded.teacher_logits.shape == (32, len(splits.labels))


def test_broad_sources_are_checked_and_filtered(tmp_path):
    from corpus import DataError
    from corpus.transfer_text import sample_transfer_texts

    path = _pool(tmp_path / "broad.csv", {"tweets": 20, "reviews": 20}, 3)
    texts, summary = sample_transfer_texts(path, 10, 0, set(), ("reviews",), "broad")
    assert summary["drawn_per_source"] == {"reviews": 10} and summary["sources"] == ["reviews"]
    with pytest.raises(DataError, match="no source dialogue"):
        sample_transfer_texts(path, 10, 0, set(), ("dialogue",), "broad")


def test_the_gate_at_its_limits_reproduces_the_fixed_weight():
    """slope 0, or every text at or under the knee: the fixed weight; a steep slope past the knee: the student."""
    from inference.expert import Gate, fuse

    rng = np.random.default_rng(0)
    student, expert = rng.normal(size=(6, 5)), np.log(rng.dirichlet(np.ones(5), 6))
    rarity = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 0.0])
    fixed = fuse(student, expert, 0.6)
    np.testing.assert_array_equal(fuse(student, expert, Gate(knee=2.5, slope=0.0).weights(0.6, rarity)), fixed)
    np.testing.assert_array_equal(fuse(student, expert, Gate(knee=5.0, slope=9.0).weights(0.6, rarity)), fixed)
    steep = fuse(student, expert, Gate(knee=0.5, slope=1e6).weights(0.6, rarity))
    np.testing.assert_allclose(steep[:5], fuse(student, expert, 0.0)[:5], atol=1e-6)
    np.testing.assert_allclose(steep[5], fixed[5], atol=1e-6)  # under the knee: the full weight
    assert Gate(knee=2.0, slope=0.5).weights(0.6, rarity).tolist() == pytest.approx([0.6, 0.6, 0.3, 0.0, 0.0, 0.6])


def test_choose_gate_follows_the_teacher():
    """Where the teacher answers like the student, the steepest slope wins (the expert only pulls away from it
    on rare text); where it answers like the expert, slope 0; the knee is the validation rarity's 0.9 quantile."""
    from modeling.expert import GATE_SLOPES, choose_gate

    rng = np.random.default_rng(1)
    student, expert = rng.normal(size=(40, 5)) * 2, np.log(rng.dirichlet(np.ones(5), 40))
    rarity = np.r_[np.full(20, 1.0), np.full(20, 3.0)]
    val_rarity = np.linspace(0.0, 1.0, 11)
    gate, rows = choose_gate(student, expert, rarity, 0.6, student, val_rarity)
    assert gate.knee == pytest.approx(0.9) and gate.slope == max(GATE_SLOPES) and set(rows) == set(GATE_SLOPES)
    gate, _ = choose_gate(student, expert, rarity, 0.6, expert * 50, val_rarity)
    assert gate.slope == 0.0


def _folder(tiny_bert, tmp_path, name="f"):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from corpus import LABELS
    from modeling import ClassifierConfig, EncoderClassifier
    from modeling.expert import ExpertConfig, fit_expert
    from modeling.onnx_export import export_folder

    rng = random.Random(5)
    texts = [t for label in LABELS for t in tiny_texts(label, 30, rng)]
    labels = np.repeat(np.arange(len(LABELS)), 30)
    gold, record = fit_expert(texts, labels, ExpertConfig(buckets=4096, folds=3, c_grid=(1.0,)))
    torch.manual_seed(0)
    model = EncoderClassifier(AutoModel.from_pretrained(tiny_bert, add_pooling_layer=False),
                              ClassifierConfig(labels=LABELS, pooling="mean", max_length=64)).eval()
    folder = export_folder(model, AutoTokenizer.from_pretrained(tiny_bert), tmp_path / name, quantize=False,
                           expert=gold, expert_info={"fit": record})
    return folder, texts


def test_a_gated_folder_answers_by_the_rule_and_one_without_a_gate_still_loads(tiny_bert, tmp_path):
    """config.json ``expert.gate`` makes the runtime weigh each text by its rarity; slope 0 answers exactly like
    the folder without a gate (a folder exported before gates existed loads and answers as it did)."""
    from inference import SentimentClassifier
    from inference.expert import Gate, fuse
    from modeling.expert import set_weight

    folder, texts = _folder(tiny_bert, tmp_path)
    texts = texts[:20] + ["совсем незнакомые слова здесь", ""]
    set_weight(folder, 0.5)
    plain = SentimentClassifier.load(folder)
    assert plain.gate is None and "gate" not in json.loads((folder / "config.json").read_text())["expert"]
    before = plain.logits(texts)
    set_weight(folder, 0.5, gate=Gate(knee=0.0, slope=0.0))
    np.testing.assert_array_equal(SentimentClassifier.load(folder).logits(texts), before)
    set_weight(folder, 0.5, gate=Gate(knee=3.0, slope=0.7))
    gated = SentimentClassifier.load(folder)
    assert gated.gate == Gate(3.0, 0.7)
    rarity = np.empty(len(texts), np.float32)
    expert = gated.expert_log_probs(texts, rarity)
    expected = fuse(gated.student_logits(texts), expert, Gate(3.0, 0.7).weights(0.5, rarity))
    np.testing.assert_allclose(gated.logits(texts), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gated.logits(texts[:1]), expected[:1], rtol=1e-5, atol=1e-5)  # the batch-1 path
    assert rarity[-1] == 0.0 and (rarity[:-1] > 0).all()
    set_weight(folder, 0.5)  # a later weight without a gate removes it
    np.testing.assert_array_equal(SentimentClassifier.load(folder).logits(texts), before)


def test_a_bad_gate_is_named(tiny_bert, tmp_path):
    from inference import ModelFolderError, SentimentClassifier
    from modeling.expert import set_weight

    folder, _ = _folder(tiny_bert, tmp_path)
    set_weight(folder, 0.5)
    config = json.loads((folder / "config.json").read_text())
    config["expert"]["gate"] = {"knee": 1.0, "slope": -1.0}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="expert.gate"):
        SentimentClassifier.load(folder)


def test_plan_transfer_finds_both_pools_beside_the_data_and_own_data_borrows_neither(tmp_path):
    """The shared layout: transfer/ and transfer-broad/ beside the RuSentiment folder give the two pools; broad:SIZE
    without a broad file fails before any work, naming the flag; own data (--train) takes neither unless given."""
    from corpus import DataError
    from corpus.transfer_text import LICENSED_BROAD_SOURCES
    from search.run import parse_args, plan_transfer
    from tests.fixtures import write_tiny_rusentiment

    data = write_tiny_rusentiment(tmp_path / "rusentiment")
    (tmp_path / "transfer").mkdir()
    (tmp_path / "transfer-broad").mkdir()
    real = _pool(tmp_path / "transfer" / "transfer_texts.csv", {"news": 50}, 1)
    broad = _pool(tmp_path / "transfer-broad" / "broad_texts.csv", {"wb_marketplace_reviews": 50, "ira_tweets": 50}, 2)
    transfer, pools = plan_transfer(parse_args(["--data-dir", str(data), "--transfer", "real:10", "broad:x0.1",
                                                "--broad-sources", "licensed"]), 100)
    assert [(t.recipe, t.size) for t in transfer] == [("real", 10), ("broad", 10)]
    assert (pools.real, pools.broad, pools.broad_sources) == (str(real), str(broad), LICENSED_BROAD_SOURCES)
    assert pools.record() == {"real": "transfer_texts.csv", "broad": "broad_texts.csv",
                              "broad_sources": list(LICENSED_BROAD_SOURCES)}
    own = write_tiny_rusentiment(tmp_path / "own") / "rusentiment_random_posts.csv"
    transfer, pools = plan_transfer(parse_args(["--train", str(own)]), 100)
    assert transfer == () and pools.files == []
    with pytest.raises(DataError, match="--broad-texts"):
        plan_transfer(parse_args(["--train", str(own), "--transfer", "broad:10"]), 100)
    transfer, pools = plan_transfer(parse_args(["--train", str(own), "--broad-texts", str(broad), "--transfer",
                                                "broad:10"]), 100)
    assert pools.files == [str(broad)] and transfer[0].recipe == "broad"


def test_the_report_states_fidelity_per_source_and_says_when_there_is_none():
    from analysis.markdown import fidelity_lines

    f = {"texts": 400, "per_source_texts": {"reviews": 200, "tweets": 200}, "fidelity_agreement": 0.8125,
         "fidelity_kl": 0.2345, "fidelity_reviews": 0.75, "fidelity_tweets": 0.875, "fidelity_s": 1.0}
    lines = fidelity_lines(f)
    assert "argmax agreement **0.812**" in lines[0] and "400 held-out" in lines[0] and "0.234 nats" in lines[0]
    assert "| reviews | 200 | 0.750 |" in lines and "| tweets | 200 | 0.875 |" in lines
    assert "no unlabelled pool" in fidelity_lines(None)[0]
