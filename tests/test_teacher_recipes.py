"""Teacher recipes + ensemble (``studies.teacher_recipes``) and installing its soft labels into a new
experiment (``studies.soft_labels``), on a tiny BERT and tiny data, CPU only."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from studies import soft_labels, teacher_recipes


@pytest.fixture(scope="module")
def recipes_run(tiny_data, tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("recipes")
    teacher_recipes.main(["--base", str(tiny_bert), "--data-dir", str(tiny_data), "--out", str(out), "--device", "cpu",
                          "--recipes", "base", "llrd", "--seeds", "14", "--epochs-scale", "0.34",
                          "--transfer", "tang:60", "join:40", "--member-transfer", "--budget-s", "1e6"])
    return out


def test_members_ensembles_and_logits(recipes_run, tiny_data):
    info = json.loads((recipes_run / "recipes.json").read_text())
    best = max(("base", "llrd"), key=lambda m: info["members"][m]["val"]["weighted_f1"])
    assert set(info["members"]) == {"base", "llrd", f"{best}-s14"}
    for m in info["members"].values():
        assert len(m["history"]) == m["config"]["epochs"] == 1 and 0 <= m["test"]["weighted_f1"] <= 1
    assert [len(e["members"]) for e in info["ensembles"]] == [1, 2, 3]
    assert info["chosen_ensemble"] in [e["members"] for e in info["ensembles"]]
    z = np.load(recipes_run / "teacher_logits.npz")
    n = info["sizes"]
    assert z["ensemble/train"].shape == (n["train"], 5) and z["ensemble/transfer/tang-60-s13"].shape == (60, 5)
    assert z["member/base/transfer/join-40-s13"].shape == (40, 5)
    # the ensemble is the mean of its members' logits
    mean = np.mean([z[f"member/{m}/val"].astype(np.float32) for m in info["chosen_ensemble"]], axis=0)
    np.testing.assert_allclose(z["ensemble/val"].astype(np.float32), mean, atol=2e-2)


def _source_experiment(root, tiny_bert):
    exp = root / "source"
    for name in ("base", "model"):
        shutil.copytree(tiny_bert, exp / "teacher" / name)
    (exp / "teacher" / "teacher.json").write_text(json.dumps({"stage": {"teacher": "tiny"}}))
    (exp / "data.json").write_text("{}")
    return exp


def test_soft_labels_install_into_a_new_experiment(recipes_run, tiny_data, tiny_bert, tmp_path):
    src = _source_experiment(tmp_path, tiny_bert)
    info = json.loads((recipes_run / "recipes.json").read_text())
    soft = soft_labels.install(src, tmp_path / "ens", recipes_run / "teacher_logits.npz", info, str(tiny_data))
    tdir = tmp_path / "ens" / "teacher"
    z = np.load(recipes_run / "teacher_logits.npz")
    np.testing.assert_array_equal(np.load(tdir / "logits_val.npy"), z["ensemble/val"].astype(np.float32))
    df = pd.read_parquet(tdir / "transfer" / "tang-60-s13.parquet")
    meta = json.loads((tdir / "transfer" / "tang-60-s13.json").read_text())
    assert len(df) == 60 and meta["size"] == 60
    assert meta["labelling_s"] is None and "all transfer sets together" in meta["labelled_by"]  # no per-set time
    assert json.loads((tdir / "teacher.json").read_text())["soft_labels"]["val"] == soft["val"]
    assert (tdir / "model" / "config.json").is_file() and not (tdir / "transfer" / "tang-60-s13.pooled.npy").exists()
    # logits from another split or other texts are refused, naming what differs
    with pytest.raises(FileExistsError):
        soft_labels.install(src, tmp_path / "ens", recipes_run / "teacher_logits.npz", info, str(tiny_data))
    bad = dict(info, transfer_text_sha={**info["transfer_text_sha"], "tang-60-s13": "0" * 16})
    with pytest.raises(ValueError, match="tang-60-s13: regenerated texts differ"):
        soft_labels.install(src, tmp_path / "ens2", recipes_run / "teacher_logits.npz", bad, str(tiny_data))
    with pytest.raises(ValueError, match="another validation split"):
        soft_labels.install(src, tmp_path / "ens3", recipes_run / "teacher_logits.npz",
                            dict(info, val_text_sha="x"), str(tiny_data))
