import shutil

import pytest

from corpus import LABELS, DataError, load_splits, resolve_data_dir
from corpus.rusentiment import ENV_VAR, FILES, download, read_labelled_csv
from tests.conftest import REAL_DATA


def _copy(tiny_data, tmp_path):
    d = tmp_path / "data"
    shutil.copytree(tiny_data, d)
    return d


def test_splits_are_stratified_seeded_and_disjoint(tiny_data):
    a = load_splits(tiny_data, seed=3)
    b = load_splits(tiny_data, seed=3)
    assert a.val.text.tolist() == b.val.text.tolist()
    assert set(a.val.label) == set(range(len(LABELS)))
    assert len(a.train) + len(a.val) == 5 * 40 + 5 * 13  # random + preselected
    assert set(a.test.source) == {"rusentiment_test"}
    assert "rusentiment_test" not in set(a.train.source) | set(a.val.source)
    c = load_splits(tiny_data, seed=4)
    assert c.val.text.tolist() != a.val.text.tolist()


def test_max_train_samples_subsets(tiny_data):
    s = load_splits(tiny_data, max_train_samples=50)
    assert len(s.train) == 50


def test_env_var_names_the_directory(tiny_data, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tiny_data))
    assert resolve_data_dir(None) == tiny_data


# bad files (empty, no rows, wrong columns, unknown label, blank text, non-UTF-8, missing file or
# directory): one home, the catalogue in tests/test_bad_input.py


def test_download_verifies_checksums_and_leaves_nothing_half_written(tmp_path, monkeypatch, tiny_data):
    import corpus.rusentiment as r

    monkeypatch.setattr(r, "SOURCE_URL", (tiny_data.as_uri() + "/{name}"))
    with pytest.raises(DataError, match="sha256"):
        download(tmp_path / "dl")  # the tiny files do not match the published checksums
    assert list((tmp_path / "dl").iterdir()) == []


def test_download_failure_names_the_flag(tmp_path, monkeypatch):
    import corpus.rusentiment as r

    monkeypatch.setattr(r, "SOURCE_URL", (tmp_path / "missing").as_uri() + "/{name}")
    with pytest.raises(DataError, match="--data-dir"):
        download(tmp_path / "dl")


@pytest.mark.skipif(not REAL_DATA, reason="RUSENTIMENT_DATA_DIR not set")
def test_real_files_match_published_checksums():
    s = load_splits(REAL_DATA)
    for name, digest in FILES.values():
        assert s.checksums[name] == digest
    assert (len(s.train), len(s.val), len(s.test)) == (26091, 2127, 2967)  # validation: 10 % of the random posts
    old = load_splits(REAL_DATA, val_from="all")
    assert (len(old.train), len(old.val)) == (25396, 2822)
    assert len(read_labelled_csv(resolve_data_dir(REAL_DATA) / FILES["test"][0])) == 2967
