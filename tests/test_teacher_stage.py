"""The teacher stage end to end through ``search/run.py`` on tiny data, offline."""
import json

import numpy as np
import pytest

from search.run import main


def _run(args):
    return main(args)


def test_hub_shaped_teacher_sweep_through_the_entry_point(tiny_data, tiny_bert, tmp_path, ray_local):
    rc = _run(["--teacher", str(tiny_bert), "--data-dir", str(tiny_data), "--storage", str(tmp_path),
               "--name", "bert", "--teacher-trials", "2", "--teacher-epochs", "1", "--stage", "teacher",
               "--teacher-lr", "3e-4"])
    assert rc == 0
    tdir = tmp_path / "bert" / "teacher"
    info = json.loads((tdir / "teacher.json").read_text())
    assert len(info["trials"]) == 2 and {t["lr"] for t in info["trials"]} == {3e-4, 8e-5}
    assert info["source"]["pooling"] == "cls"
    data = json.loads((tmp_path / "bert" / "data.json").read_text())
    for split in ("train", "val", "test"):
        logits = np.load(tdir / f"logits_{split}.npy")
        assert logits.shape == (data["sizes"][split], 5) and np.isfinite(logits).all()
        assert 0 <= info[split]["weighted_f1"] <= 1
    # the saved teacher is a standard HF directory plus head, loadable on its own
    from modeling import EncoderClassifier

    model, tok = EncoderClassifier.load(tdir / "model")
    assert model.encoder.config.hidden_size == 312 and len(tok) == model.encoder.config.vocab_size
    # a second run reuses the cached teacher instead of retraining it
    mtime = (tdir / "teacher.json").stat().st_mtime
    assert _run(["--teacher", str(tiny_bert), "--data-dir", str(tiny_data), "--storage", str(tmp_path),
                 "--name", "bert", "--stage", "teacher"]) == 0
    assert (tdir / "teacher.json").stat().st_mtime == mtime


def test_offline_e5_teacher_default(tiny_data, tmp_path, ray_local):
    rc = _run(["--data-dir", str(tiny_data), "--storage", str(tmp_path), "--name", "e5",
               "--teacher-epochs", "1", "--max-train-samples", "40", "--stage", "teacher"])
    assert rc == 0
    info = json.loads((tmp_path / "e5" / "teacher" / "teacher.json").read_text())
    assert info["source"]["text_prefix"] == "query: " and info["source"]["pooling"] == "mean"
    assert info["vocab"]["original_pieces"] == 250002 and info["vocab"]["kept_pieces"] < 1000


def test_hub_id_offline_fails_fast_naming_the_alternatives(tiny_data, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network retries to wait for; timings belong in benchmarks
    rc = _run(["--teacher", "cointegrated/rubert-tiny2", "--data-dir", str(tiny_data),
               "--storage", str(tmp_path), "--stage", "teacher"])
    assert rc == 2
    assert not list(tmp_path.rglob("teacher.json"))  # it stopped before training anything
    assert "--teacher e5-small" in caplog.text and "--teacher /path/to/a/local/model/dir" in caplog.text


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--teacher", "--data-dir", "--storage", "--name", "--seed", "--max-train-samples", "--teacher-trials"):
        assert opt in out


def test_same_seed_gives_the_same_teacher(tiny_data, tiny_bert, tiny_teacher, tmp_path, ray_local):
    """A teacher run with the seed of the session's tiny teacher (a fresh experiment, same machine and thread count,
    the same arguments) gives the same validation metrics and logits: tolerance 1e-6 on metrics, 1e-5 on logits (bf16
    autocast included)."""
    assert _run(["--teacher", str(tiny_bert), "--data-dir", str(tiny_data), "--storage", str(tmp_path),
                 "--name", "again", "--teacher-epochs", "1", "--stage", "teacher"]) == 0
    infos, logits = [], []
    for teacher in (tiny_teacher / "teacher", tmp_path / "again" / "teacher"):
        infos.append(json.loads((teacher / "teacher.json").read_text()))
        logits.append(np.load(teacher / "logits_val.npy"))
    for key in ("accuracy", "weighted_f1", "macro_f1"):
        assert abs(infos[0]["val"][key] - infos[1]["val"][key]) <= 1e-6
    np.testing.assert_allclose(logits[0], logits[1], rtol=0, atol=1e-5)


def test_a_cached_teacher_of_other_splits_is_refused_before_work(tiny_teacher, tiny_bert, tiny_data, tmp_path, caplog):
    """The cached teacher's logits are rows of the splits it saw (data.json); a run whose --seed splits the posts
    otherwise would read them against the wrong posts, so it stops at the plan, naming the file and what differs."""
    from tests.fixtures import with_teacher

    exp = with_teacher(tiny_teacher, tmp_path, "teacher")
    logits = np.load(exp / "teacher" / "logits_train.npy")
    rc = _run(["--teacher", str(tiny_bert), "--data-dir", str(tiny_data), "--storage", str(tmp_path),
               "--name", "teacher", "--teacher-epochs", "1", "--stage", "teacher", "--seed", "7"])
    assert rc == 2
    assert "data.json: the cached teacher's outputs were computed on other splits (seed differ" in caplog.text
    assert "seed 13 now 7" in caplog.text
    assert np.array_equal(np.load(exp / "teacher" / "logits_train.npy"), logits)  # nothing was recomputed
    assert _run(["--teacher", str(tiny_bert), "--data-dir", str(tiny_data), "--storage", str(tmp_path),
                 "--name", "teacher", "--teacher-epochs", "1", "--stage", "teacher"]) == 0  # same splits: reused
