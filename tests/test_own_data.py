"""A user's own data: a tiny 3-class dataset (labels unlike RuSentiment's) in each file form, its
label set carried from the data to the teacher, the students, the report, the export and the runtime."""
from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from corpus import load_table_splits
from tests.fixtures import tiny_texts

# three topics built from the fixture's word lists, with labels of their own
TOPICS = {"жалоба": "negative", "новость": "neutral", "похвала": "positive"}


def topic_frame(per_class: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = [(t, label) for label, words in TOPICS.items() for t in tiny_texts(words, per_class, rng)]
    rng.shuffle(rows)
    return pd.DataFrame(rows, columns=["body", "topic"])


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("own")
    topic_frame(60, 0).to_csv(d / "train.csv", index=False)
    topic_frame(15, 1).to_csv(d / "test.tsv", sep="\t", index=False)
    return d


@pytest.mark.parametrize("form", ["csv", "tsv", "jsonl", "parquet", "save_to_disk"])
def test_every_file_form_gives_the_same_splits(tmp_path, form):
    df = topic_frame(20, 0)
    path = tmp_path / f"train.{form}"
    if form == "csv":
        df.to_csv(path, index=False)
    elif form == "tsv":
        df.to_csv(path, sep="\t", index=False)
    elif form == "jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    elif form == "parquet":
        df.to_parquet(path)
    else:
        import datasets

        datasets.DatasetDict({"train": datasets.Dataset.from_pandas(df)}).save_to_disk(str(path))
    s = load_table_splits(str(path), text_column="body", label_column="topic", seed=3)
    assert s.labels == ("жалоба", "новость", "похвала")  # alphabetical: the order is recorded, not assumed
    assert len(s.train) + len(s.val) == 60 and not s.has_test
    assert sorted(s.val.label.value_counts()) == [2, 2, 2]  # stratified


def test_integer_labels_sort_numerically_and_classlabel_keeps_its_names(tmp_path):
    import datasets

    df = pd.DataFrame({"text": [f"текст {i}" for i in range(40)], "label": [10, 2, 1, 2] * 10})
    df.to_csv(tmp_path / "ints.csv", index=False)
    assert load_table_splits(str(tmp_path / "ints.csv")).labels == ("1", "2", "10")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["pos", "neg"])})
    ds = datasets.Dataset.from_dict({"text": [f"т {i}" for i in range(20)], "label": [0, 1] * 10}, features=features)
    ds.save_to_disk(str(tmp_path / "cl"))
    s = load_table_splits(str(tmp_path / "cl"))
    assert s.labels == ("pos", "neg")


# bad own data (missing column, one class, empty text, unreadable file, a test label unseen in
# training): one home, the catalogue in tests/test_bad_input.py


@pytest.mark.slow
def test_own_three_class_data_end_to_end(own_data, tiny_bert, tmp_path, ray_local):
    from analysis.__main__ import main as report_main
    from analysis.export import main as export_main
    from inference import SentimentClassifier
    from search.run import main

    storage = tmp_path / "exp"
    rc = main(["--teacher", str(tiny_bert), "--train", str(own_data / "train.csv"), "--test",
               str(own_data / "test.tsv"), "--text-column", "body", "--label-column", "topic",
               "--storage", str(storage), "--name", "own", "--trials", "2", "--max-epochs", "1", "--min-epochs", "1", "--bench-texts", "20",
               "--teacher-epochs", "1", "--transfer", "--feature-kd", "0", "--inits", "teacher", "random",
               "--lexical-buckets", "0", "4096"])
    assert rc == 0
    exp = storage / "own"
    data = json.loads((exp / "data.json").read_text())
    assert data["labels"] == ["жалоба", "новость", "похвала"] and data["dataset"]["kind"] == "table"
    assert json.loads((exp / "teacher" / "teacher.json").read_text())["test"]["weighted_f1"] >= 0
    assert report_main(["--experiment", str(exp), "--out", str(tmp_path / "report"), "--bench-texts", "20"]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert list(report["per_class_f1"]) == ["жалоба", "новость", "похвала"]
    assert report["confusion_matrix"]["labels"] == ["жалоба", "новость", "похвала"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert md.startswith("# Distillation report: own data `train.csv` (3 classes)")  # the data, not "train"
    for text in (md, (tmp_path / "report" / "report.json").read_text()):  # no path of this machine
        assert str(tmp_path) not in text and str(own_data) not in text
    assert export_main(["--experiment", str(exp), "--out", str(tmp_path / "model")]) == 0
    clf = SentimentClassifier.load(tmp_path / "model")
    assert clf.labels == ["жалоба", "новость", "похвала"]
    assert clf(["Ужасно плохо"])[0]["label"] in clf.labels


@pytest.mark.slow
def test_own_data_without_a_test_file_reports_validation_only(own_data, tiny_bert, tmp_path, ray_local, caplog):
    """No test file: validation-only figures. No transfer text either (no --transfer, no --transfer-texts): the
    run says so in one warning and goes on with the labelled posts."""
    from analysis.__main__ import main as report_main
    from search.run import main

    storage = tmp_path / "exp"
    rc = main(["--teacher", str(tiny_bert), "--train", str(own_data / "train.csv"), "--text-column", "body",
               "--label-column", "topic", "--storage", str(storage), "--name", "noval", "--trials", "1", "--bench-texts", "20",
               "--max-epochs", "1", "--min-epochs", "1", "--teacher-epochs", "1", "--feature-kd", "0",
               "--inits", "random", "--lexical-buckets", "0"])
    assert rc == 0
    missing = [r.getMessage() for r in caplog.records if "no transfer text" in r.getMessage()]
    assert len(missing) == 1 and "--transfer-texts" in missing[0] and "\n" not in missing[0], missing
    assert "test" not in json.loads((storage / "noval" / "teacher" / "teacher.json").read_text())
    assert report_main(["--experiment", str(storage / "noval"), "--out", str(tmp_path / "report"), "--bench-texts", "20"]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "is on validation (no test file was given)" in md
