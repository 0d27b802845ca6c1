"""Student search end to end (tiny teacher, tiny data), the export path and the space."""
import json
import logging
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch

from search.run import main
from tests.fixtures import with_teacher
from spaces.student import HEADS_FOR_HIDDEN, StudentConfig, StudentSpace, sample_student
from trainables.student import build_student

REQUIRED = ["trial_id", "layers", "hidden", "heads", "ffn", "vocab", "kd_alpha", "kd_temperature", "lr", "epochs",
            "init", "transfer", "feature_kd", "hidden_kd", "train_pool", "status", "val_weighted_f1", "int8_val_weighted_f1", "int8_val_accuracy", "int8_val_macro_f1",
            "int8_fp32_agreement", "latency_ms_p50", "latency_ms_p95", "throughput_b32_per_s", "size_mib", "params",
            "model_dir"]


class Lines(logging.Handler):
    """The messages of the log records it sees."""
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


SEARCH_LOG = Lines()  # what the module's one search logged (the `searched` fixture)


@pytest.fixture(scope="module")
def searched(tiny_data, tiny_bert, tiny_teacher, tmp_path_factory, ray_local):
    storage = tmp_path_factory.mktemp("exp")
    with_teacher(tiny_teacher, storage, "smoke")
    logger = logging.getLogger("search")
    level = logger.level
    logger.addHandler(SEARCH_LOG)
    logger.setLevel(logging.INFO)
    try:
        rc = run_search(storage, tiny_data, tiny_bert)
    finally:
        logger.removeHandler(SEARCH_LOG)
        logger.setLevel(level)
    assert rc == 0
    return storage / "smoke"


def run_search(storage, tiny_data, tiny_bert):
    return main(["--teacher", str(tiny_bert), "--data-dir", str(tiny_data), "--storage", str(storage),
               "--name", "smoke", "--trials", "2", "--max-epochs", "2", "--teacher-epochs", "1", "--bench-texts", "20",
               "--transfer", "tang:x0.5", "join:30", "--feature-kd", "0", "1", "--hidden-kd", "0", "1",
               "--inits", "teacher", "random", "--lexical-buckets", "0", "4096", "--expert-buckets", "0", "4096",
               "--hidden", "96", "128", "192", "256", "384", "--grace-rounds", "1",
               "--enqueue", "layers=1,init=random,lexical_buckets=4096,kd_alpha=0.5,expert_buckets=4096"])


def test_the_search_logs_one_progress_line_per_finished_trial(searched):
    lines = [m for m in SEARCH_LOG.lines if m.startswith("student search: ")]
    assert [m.split(" trials done")[0] for m in lines] == ["student search: 1/2", "student search: 2/2"], lines
    assert lines[-1].endswith("about 0 min left") and "0 failed" in lines[-1]


def test_two_trial_search_writes_complete_trials_table(searched):
    df = pd.read_csv(searched / "trials.csv")
    assert len(df) == 2
    assert df[REQUIRED].notna().all().all(), df[REQUIRED].T
    assert set(df.status) <= {"completed", "stopped_early"}
    for d in df.model_dir:
        assert (searched / d / "model.onnx").is_file()
    assert ((df.int8_fp32_agreement >= 0) & (df.int8_fp32_agreement <= 1)).all()
    assert (df.fp32_size_mib > df.size_mib).all() and (df.fp32_e2e_ms_p50 > 0).all()  # both forms measured
    assert (df.ptq_rungs == 3).all() and (df.int8_round == df["round"]).all()  # int8 of a rung or the last round
    assert (df.bench_texts == 20).all() and (df.n_latency == 20).all()  # --bench-texts: what each trial timed
    for prog in (searched / "student_trials").glob("*/progress.csv"):  # between rungs the last int8 figures stand
        p = pd.read_csv(prog)
        assert (p.int8_round <= p["round"]).all() and set(p.int8_round) <= {1, 3, 9, p["round"].max()}
    study = optuna.load_study(study_name="students", storage=f"sqlite:///{searched / 'optuna.db'}")
    finished = [t for t in study.trials if t.state.is_finished()]  # stored for optuna-dashboard / Optuna's plots
    assert len(finished) == 2, [(t.number, t.state, t.params) for t in study.trials]
    assert study.metric_names == ["int8_val_weighted_f1", "e2e_ms_p50", "size_mib"]  # named for optuna-dashboard
    enqueued = (df.layers == 1) & (df.init == "random") & (df.lexical_buckets == 4096) & (df.kd_alpha == 0.5)
    assert enqueued.sum() == 1, df[["trial_id", "layers", "init", "lexical_buckets", "kd_alpha"]]  # --enqueue ran
    fused = df[enqueued].iloc[0]  # the gold expert: fitted once, fused at a weight chosen on validation, exported
    assert fused.expert_buckets == 4096 and 0 <= fused.expert_weight <= 1
    config = json.loads((searched / fused.model_dir / "config.json").read_text())
    assert config["expert"]["weight"] == fused.expert_weight and config["expert"]["buckets"] == 4096
    assert (searched / fused.model_dir / "expert.npz").is_file()
    assert json.loads((searched / "expert_4096.json").read_text())["train_posts"] > 0
    for name in ("tang", "join"):  # transfer sets labelled once by the teacher, with their cost
        meta = json.loads(next((searched / "teacher" / "transfer").glob(f"{name}-*.json")).read_text())
        assert meta["labelling_s"] >= 0 and sum(meta["teacher_argmax_classes"].values()) == meta["size"]
    assert (searched / "teacher" / "pooled_train.npy").is_file()
    summary = json.loads((searched / "search.json").read_text())
    assert summary["trials"] == 2 and len(summary["front"]) >= 1
    assert "test_weighted_f1" in pd.read_csv(searched / "pareto.csv")


def test_onnx_fp32_matches_torch_and_int8_agrees(tiny_bert, tiny_data, tmp_path):
    from corpus import load_splits
    from inference import SentimentClassifier
    from modeling import ClassifierConfig, EncoderClassifier
    from modeling.onnx_export import export_folder
    from teachers import load_encoder, resolve_teacher

    src = resolve_teacher(str(tiny_bert), tmp_path)
    encoder, tok = load_encoder(src)
    teacher = EncoderClassifier(encoder, ClassifierConfig(labels=("a", "b", "c", "d", "e"), pooling="cls"))
    texts = load_splits(tiny_data).val.text.tolist()
    cfg = StudentConfig(layers=2, hidden=96, heads=3, ffn=192, vocab=0, init="teacher", threads=1)
    torch.manual_seed(0)  # the classifier head is drawn at random: the agreement threshold holds for this draw
    student, stok = build_student(cfg, teacher, tok, texts, None)
    student.eval()
    fp32 = SentimentClassifier.load(export_folder(student, stok, tmp_path / "fp32", quantize=False))
    int8 = SentimentClassifier.load(export_folder(student, stok, tmp_path / "int8"))
    enc = stok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        ref = student(enc["input_ids"], enc["attention_mask"]).numpy()
    onnx32 = fp32.logits(texts, batch_size=8)
    assert np.allclose(ref, onnx32, atol=1e-4)
    assert (ref.argmax(1) == onnx32.argmax(1)).all()
    agreement = (int8.logits(texts).argmax(1) == ref.argmax(1)).mean()
    assert agreement >= 0.8
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < (tmp_path / "fp32" / "model.onnx").stat().st_size


def test_space_never_samples_invalid_heads():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(200):
        t = study.ask()
        fixed = sample_student(t)
        hidden = t.params["hidden"]
        assert fixed["heads"] in HEADS_FOR_HIDDEN[hidden] and hidden % fixed["heads"] == 0
        assert 1 <= t.params["layers"] <= 4 and fixed["ffn"] in (hidden, 2 * hidden, 4 * hidden)
        assert fixed["transfer"] == "none" and fixed["feature_kd"] == 0.0
        StudentConfig(**{k: v for k, v in {**t.params, **fixed}.items() if k in StudentConfig.__dataclass_fields__})
        study.tell(t, 0.0)
    space = StudentSpace(layers=(1, 2), hidden=(128,), transfer=("none", "tang"), feature_kd=(0.0, 1.0))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(50):
        t = study.ask()
        fixed = sample_student(t, space)
        assert "hidden" not in t.params and fixed["hidden"] == 128  # one choice: a constant
        assert t.params["layers"] <= 2
        seen.add((t.params["transfer"], t.params["feature_kd"]))
        study.tell(t, 0.0)
    assert len(seen) == 4
    with pytest.raises(ValueError, match="hidden sizes \\[100\\]"):
        StudentSpace(hidden=(100,))


def test_kd_loss_uses_hard_labels_only_where_known():
    """kd_loss against its formula written out in numpy (Hinton et al.: T^2 * KL(teacher_T || student_T),
    mean over all rows; cross-entropy only over rows with a gold label), and a known-answer case."""
    from trainables.distill import kd_loss

    def log_softmax(x):
        x = x - x.max(1, keepdims=True)
        return x - np.log(np.exp(x).sum(1, keepdims=True))

    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 5, generator=gen, dtype=torch.float64), torch.randn(4, 5, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, -1, 3, -1])  # class 0 is a gold label like any other; only -1 means none
    ls, lt = log_softmax(s.numpy() / 2.0), log_softmax(t.numpy() / 2.0)
    kl = (np.exp(lt) * (lt - ls)).sum(1).mean() * 2.0 ** 2
    ce = -np.mean([log_softmax(s.numpy())[i, labels[i]] for i in (0, 2)])
    assert kd_loss(s, t, labels, 0.5, 2.0).item() == pytest.approx(0.5 * kl + 0.5 * ce, rel=1e-9)
    assert kd_loss(s, t, labels, 1.0, 2.0).item() == pytest.approx(kl, rel=1e-9)
    assert kd_loss(s, t, torch.full((4,), -1), 0.5, 2.0).item() == pytest.approx(0.5 * kl, rel=1e-9)
    # known answer: a student equal to the teacher has no soft loss; uniform logits give CE = log 5
    assert kd_loss(t, t, torch.full((4,), -1), 1.0, 3.0).item() == pytest.approx(0, abs=1e-12)
    zeros = torch.zeros(2, 5, dtype=torch.float64)
    assert kd_loss(zeros, zeros, torch.tensor([0, 4]), 0.0, 1.0).item() == pytest.approx(np.log(5))


def test_report_of_a_tiny_experiment(searched, tiny_data, tmp_path):
    from analysis.__main__ import main as report_main

    out = tmp_path / "report"
    assert report_main(["--experiment", str(searched), "--out", str(out), "--data-dir", str(tiny_data),
                        "--before", str(searched), "--labels", "old search", "new search"]) == 0
    md = (out / "report.md").read_text()
    assert "median over 20 sampled validation posts" in md  # the search's --bench-texts, without repeating it here
    r = json.loads((out / "report.json").read_text())
    # one benchmark: every system the report times (teacher, its int8, the student's forms, TF-IDF) timed the texts
    # the chosen trial's own benchmark timed in the search, as many, on one thread
    trial = pd.read_csv(searched / "trials.csv", dtype={"trial_id": str}).set_index("trial_id").loc[r["chosen"]["trial_id"]]
    timed = r["four_configurations"] + [r["baseline"]]
    assert {(c["n_latency"], c["bench_sha"], c["bench_threads"]) for c in timed} == {(20, trial.bench_sha, 1)}
    assert trial.bench_threads == 1 and r["bench_texts"] == 20
    assert "limits: latency no limit, size no limit" in md and "None ms" not in md
    assert "Trivial trials (int8 validation weighted F1 <= " in md and r["trivial"]["val_weighted_f1"] > 0
    assert "5-fold cross-validation over all" in md and r["baseline"]["fit_posts"] == r["data"]["sizes"]["train"] + \
        r["data"]["sizes"]["val"]
    for section in ("## Targets", "## Four configurations", "## Chosen student", "## Student search", "## Teacher",
                    "## Transfer sets", "## Data", "Confusion matrix"):
        assert section in md, section
    names = [c["name"] for c in r["four_configurations"]]
    assert names[0].startswith("teacher (fp32") and names[1].startswith("teacher + int8") and len(names) == 4
    for c in r["four_configurations"]:
        assert c["latency_ms_p50"] > 0 and c["size_mib"] > 0 and 0 <= c["test_weighted_f1"] <= 1
    teacher_ms = r["four_configurations"][0]["latency_ms_p50"]
    for c in r["four_configurations"][1:]:  # each speed-up is the teacher's latency over the row's own
        assert c["speedup_vs_teacher"] == pytest.approx(teacher_ms / c["latency_ms_p50"], rel=0.01), c
    assert r["baseline"]["size_mib"] > 0 and 0 <= r["baseline"]["test_weighted_f1"] <= 1
    assert set(r["per_class_f1"]) == {"negative", "neutral", "positive", "skip", "speech"}
    for png in ("pareto_latency.png", "pareto_size.png", "pareto_before_after.png"):
        assert (out / png).stat().st_size > 1000, png
    html = (out / "report.html").read_text()  # self-contained: plotly inside, a hover text per trial
    assert "plotly" in html and "trial_id: " in html and "TF-IDF + LinearSVC" in html
    assert r["before"] == {"experiment": searched.name, "labels": ["old search", "new search"]}  # no machine path
    trials = pd.read_csv(searched / "trials.csv")  # each option value the trials drew, with its cost
    drawn = {(o, v) for o in ("init", "transfer", "feature_kd", "hidden_kd", "lexical_buckets") if trials[o].nunique() > 1
             for v in trials[o]}
    assert {(c["option"], c["value"]) for c in r["option_costs"]} == drawn
    assert all(c["median_round_train_s"] > 0 and c["trials"] >= 1 for c in r["option_costs"])
    assert ("What each option costs" in md) == bool(drawn) and "| gold expert (w) |" in md
    assert report_main(["--experiment", str(tmp_path / "nope")]) == 2
    assert report_main(["--experiment", str(searched), "--before", str(tmp_path / "nope")]) == 2


def test_export_round_trip(searched, tiny_data, tmp_path, caplog):
    from analysis.export import main as export_main
    from inference import SentimentClassifier

    assert export_main(["--experiment", str(searched), "--out", str(tmp_path / "m")]) == 0
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["provenance"]["teacher"] and cfg["provenance"]["data_checksums"]
    assert cfg["provenance"]["soft_labels"] is None  # the teacher's own logits (no ensemble installed)
    # the trainable's own record: every StudentConfig field, not only the searched ones
    assert {"hidden_kd", "batch_size", "max_length", "dropout", "warmup_ratio", "seed"} <= set(cfg["provenance"]["trial"])
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "m" / "README.md")
    assert card.data.language == "ru" and card.data.base_model and card.data.eval_results[0].metric_value > 0
    df = pd.read_csv(searched / "trials.csv", dtype={"trial_id": str})
    row = df[df.trial_id == cfg["provenance"]["trial_id"]].iloc[0]
    # the exported folder answers what the trial's own int8 model answers, plus the class bias fitted on validation
    texts = ["Отличный день!", "ужасно", "", "С днём рождения"]
    a = SentimentClassifier.load(tmp_path / "m").logits(texts)
    b = SentimentClassifier.load(searched / row.model_dir).logits(texts)
    bias = np.asarray(cfg["class_bias"]["bias"], np.float32)
    assert bias.shape == (5,) and abs(bias.sum()) < 1e-4 and cfg["class_bias"]["folds"] == 5
    np.testing.assert_allclose(a, b + bias, rtol=0, atol=1e-6)
    assert "class-prior bias fitted on validation" in (tmp_path / "m" / "README.md").read_text()
    assert export_main(["--experiment", str(searched), "--out", str(tmp_path / "n"), "--class-bias", "none"]) == 0
    assert (SentimentClassifier.load(tmp_path / "n").logits(texts) == b).all()  # none: the trial's answers exactly
    assert "class_bias" not in json.loads((tmp_path / "n" / "config.json").read_text())
    # another quantization form: the fp32 student re-exported and measured, its own figures in the card
    assert export_main(["--experiment", str(searched), "--out", str(tmp_path / "q"), "--trial", row.trial_id,
                        "--quantization", "int4", "--data-dir", str(tiny_data)]) == 0
    q = json.loads((tmp_path / "q" / "config.json").read_text())
    assert q["quantization_form"] == "int4" and q["provenance"]["metrics"]["quantization_form"] == "int4"
    # re-measured by the one benchmark on the texts the trial timed in the search (its --bench-texts 20), 1 thread
    metrics = q["provenance"]["metrics"]
    assert (metrics["n_latency"], metrics["bench_sha"], metrics["bench_threads"]) == (20, row.bench_sha, 1)
    assert 0 <= q["provenance"]["metrics"]["export_val_weighted_f1"] <= 1
    assert SentimentClassifier.load(tmp_path / "q")(["ура"])[0]["label"] in q["labels"]
    assert export_main(["--experiment", str(searched), "--out", str(tmp_path / "x"), "--trial", "nope"]) == 2
    assert "trial 'nope' is not in" in caplog.text  # one logged error line (search/cli.py:run_cli)
    assert export_main(["--experiment", str(searched), "--out", str(tmp_path / "y"), "--max-size-mb", "0.00001"]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.fixture(scope="module")
def ablated(searched, tiny_data, tmp_path_factory):
    """The ablation study run once on the searched experiment (its real transfer set, importance.npz and
    ablation.csv are what the bundle, report and export tests read): (experiment, its output)."""
    from studies.ablation import AblationConfig, run_ablation

    tmp = tmp_path_factory.mktemp("ablation-inputs")
    texts = tmp / "transfer.csv"
    pd.DataFrame({"source": "t", "text": [f"просто текст номер {i} ура" for i in range(80)]}).to_csv(texts, index=False)
    ood = tmp / "ood.csv"
    pd.DataFrame({"label": ["positive", "negative", "neutral", "skip", "speech"] * 4,
                  "text": ["ура", "плохо", "город", "vk", "спасибо"] * 4}).to_csv(ood, index=False)
    # two rows carry every lever the ablation must wire (hidden-state KD; pruning, real text, lexical branch,
    # the gold expert: the second row reports the student alone and fused, studies.ablation.lexical_parts)
    rows = ("base:init=teacher,hidden_kd=1",
            "real:init=pruned,transfer=real,transfer_ratio=0.5,lexical_buckets=4096,expert_buckets=4096")
    out = run_ablation(AblationConfig(experiment=str(searched), data_dir=str(tiny_data), rows=rows,
                                      base="layers=2,hidden=156,heads=6,ffn=300,vocab=0,epochs=1",
                                      transfer=("real:60", "tang:30"), transfer_texts=str(texts), ood_test=str(ood)))
    return searched, out


def test_ablation_runs_each_row_on_one_student(ablated, tiny_data):
    from studies.ablation import AblationConfig, run_ablation

    searched, out = ablated
    df = pd.read_csv(searched / "ablation.csv")
    assert df.row.tolist() == ["base", "real"]
    assert df.int8_val_weighted_f1.notna().all() and df.test_weighted_f1.notna().all()
    assert df.ood_weighted_f1.notna().all() and (df.test_wf1_low <= df.test_weighted_f1).all()
    assert df.test_delta_wf1.iloc[0] == 0 and df.delta_int8_val_weighted_f1.iloc[0] == 0
    assert (searched / "teacher" / "layers_train.npy").is_file() and (searched / "teacher" / "importance.npz").is_file()
    real = df.set_index("row").loc["real"]
    n_labelled = real.train_pool - 60
    assert real.epoch_posts == n_labelled + min(60, round(0.5 * n_labelled))  # all labelled + transfer draws
    meta = json.loads(next((searched / "teacher" / "transfer").glob("real-60-*.json")).read_text())
    assert meta["source"]["drawn_per_source"] == {"t": 60}
    assert real.lexical_buckets == 4096 and (searched / real.model_dir / "lexical.npz").is_file()
    assert real.init == "pruned" and df.set_index("row").loc["base"].hidden_kd == 1
    assert out["rows"] and (searched / "ablation_students").is_dir()
    parts = pd.read_csv(searched / "ablation_parts.csv")  # the row with the expert: the same student alone and fused
    fixed = ["fused, one weight for every text"] if real.gate_slope > 0 else []  # a gated folder, also ungated
    assert parts.part.tolist() == ["student alone", "student alone", *fixed, "fused with the gold expert"]
    assert parts.row.tolist() == ["base", "real", "real", *(["real"] * len(fixed))] and parts.test_delta_wf1.iloc[0] == 0
    if fixed:  # the gate's own paired effect, on the gated (shipped) part only
        gated = parts[parts.part == "fused with the gold expert"].iloc[0]
        assert gated.test_gate_delta_low <= gated.test_gate_delta_wf1 <= gated.test_gate_delta_high
        assert parts[parts.part != "fused with the gold expert"].test_gate_delta_wf1.isna().all()
    # the pool's held-out slice (8 of its 80 texts) measures every row's fidelity to the teacher
    assert df.fidelity_agreement.between(0, 1).all() and df.fidelity_t.notna().all()
    assert (searched / real.model_dir / "expert.npz").is_file()
    with pytest.raises(ValueError, match="not FIELD=VALUE over a student field"):
        run_ablation(AblationConfig(experiment=str(searched), data_dir=str(tiny_data), rows=("x:nope=1",)))


def test_students_trained_outside_ray_from_a_bundle(ablated, tiny_data, tmp_path):
    """pack -> run (no Ray: FolderReporter; the same fit_student) -> collect into a table the report and
    the export take (the ablation fixture built importance.npz and a real transfer set)."""
    from analysis.export import main as export_main
    from studies.train_students import main as students_main

    searched = ablated[0]
    real = next((searched / "teacher" / "transfer").glob("real-60-*.parquet")).stem
    bundle, runs = tmp_path / "bundle", tmp_path / "runs"
    assert students_main(["pack", "--experiment", str(searched), "--out", str(bundle), "--layers", "2",
                          "--transfer", real, "--data-dir", str(tiny_data)]) == 0
    assert json.loads((bundle / "bundle.json").read_text())["teacher_layers"] == 2
    assert students_main(["run", "--bundle", str(bundle), "--out", str(runs), "--threads", "1",
                          "--base", "layers=2,hidden=156,heads=6,ffn=300,vocab=0,epochs=2,init=pruned",
                          "--rows", "long:transfer=real,lexical_buckets=4096", "plain:epochs=1",
                          "tok:epochs=1,token_kd=1"]) == 0
    assert sorted(p.name for p in runs.glob("*.tar")) == ["long.tar", "plain.tar", "tok.tar"]
    assert students_main(["collect", "--experiment", str(searched), "--runs", str(runs), "--tag", "long",
                          "--data-dir", str(tiny_data)]) == 0
    df = pd.read_csv(searched / "long.csv")
    assert df.row.tolist() == ["long", "plain", "tok"] and df.test_weighted_f1.notna().all()
    assert df.epoch.tolist() == [2, 1, 1] and df.lexical_buckets.tolist() == [4096, 0, 0]
    assert df.token_kd.tolist() == [0, 0, 1]
    assert (df.e2e_ms_p50 > 0).all() and df.trained_on.isin(["cpu", "cuda"]).all()
    assert export_main(["--experiment", str(searched), "--table", "long", "--trial", "long_long",
                        "--out", str(tmp_path / "model")]) == 0
    assert (tmp_path / "model" / "lexical.npz").is_file()


def test_report_and_export_from_the_ablation_table(ablated, tiny_data, tmp_path):
    from analysis.__main__ import main as report_main
    from analysis.export import main as export_main
    from inference import SentimentClassifier

    searched = ablated[0]
    ood = tmp_path / "ood.csv"
    pd.DataFrame({"label": ["positive", "negative", "neutral", "skip", "speech"] * 4,
                  "text": ["ура", "плохо", "город", "vk", "спасибо"] * 4}).to_csv(ood, index=False)
    out = tmp_path / "report"
    assert report_main(["--experiment", str(searched), "--out", str(out), "--data-dir", str(tiny_data),
                        "--table", "ablation", "--ood-test", str(ood), "--bench-texts", "20"]) == 0
    r = json.loads((out / "report.json").read_text())
    student = r["four_configurations"][-1]
    assert 0 <= student["ood_weighted_f1"] <= 1 and student["test_wf1_low"] <= student["test_weighted_f1"]
    assert student["e2e_ms_p50"] > 0 and student["latency_ms_p50"] > 0  # timings: benchmarks, not tests
    assert r["baseline"]["fit_posts"] == r["data"]["sizes"]["train"] + r["data"]["sizes"]["val"]  # the fair baseline
    assert set(r["versus_baseline"]) == {"test", "ood"} and "ood_weighted_f1" in r["baseline"]
    md = (out / "report.md").read_text()
    assert "ood.csv weighted F1" in md and "## Ablation" in md and "## Student search" not in md
    assert export_main(["--experiment", str(searched), "--out", str(tmp_path / "m"), "--table", "ablation"]) == 0
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["provenance"]["trial"]["row"] == r["chosen"]["row"]
    assert SentimentClassifier.load(tmp_path / "m")(["ура"])[0]["label"] in cfg["labels"]


def test_layer_map_and_hidden_loss(tiny_bert):
    from transformers import AutoModel

    from corpus import LABELS
    from modeling import ClassifierConfig, EncoderClassifier
    from trainables.distill import hidden_loss, layer_map

    assert layer_map(1, 12) == [11] and layer_map(2, 12) == [5, 11] and layer_map(3, 12) == [3, 7, 11]
    assert layer_map(4, 3) == [0, 1, 1, 2]
    model = EncoderClassifier(AutoModel.from_pretrained(tiny_bert, add_pooling_layer=False), ClassifierConfig(LABELS)).eval()
    ids, mask = torch.randint(5, 100, (4, 9)), torch.ones(4, 9, dtype=torch.long)
    logits, layers = model(ids, mask, return_layers=True)
    assert logits.shape == (4, 5) and layers.shape == (4, 3, 312)
    proj = torch.nn.ModuleList(torch.nn.Linear(312, 312) for _ in range(2))
    with torch.no_grad():
        for p in proj:
            p.weight.copy_(torch.eye(312))
            p.bias.zero_()
    # identical features through identity projections: no loss; unrelated ones: a positive loss
    assert hidden_loss(layers[:, :2], layers[:, :2], proj).abs() < 1e-5
    assert hidden_loss(layers[:, :2], torch.randn(4, 2, 312), proj) > 0.5


def test_damaged_caches_are_found_and_rebuilt(searched, tiny_data, tmp_path):
    """A cache file cut short (a killed writer, a full disk) is rebuilt on the next run; whole ones are reused
    (on a copy of the searched experiment: the shared one stays whole for the other tests)."""
    import shutil

    from corpus import load_splits
    from corpus.cache import cache_root
    from search.teacher_stage import TeacherStageConfig, run_teacher_stage
    from search.teacher_stage import ensure_importance
    from search.transfer_stage import build_transfer

    searched = Path(shutil.copytree(searched, tmp_path / "copy"))
    tdir = searched / "teacher"
    splits = load_splits(str(tiny_data), seed=13)
    teacher_cfg = TeacherStageConfig(teacher=json.loads((tdir / "teacher.json").read_text())["stage"]["teacher"])
    ensure_importance(splits, searched, cache_root(), 1)
    whole = {p: p.stat().st_mtime_ns for p in (tdir / "logits_val.npy", tdir / "logits_test.npy")}
    good = np.load(tdir / "logits_train.npy")
    for path in (tdir / "logits_train.npy", tdir / "importance.npz",
                 next((tdir / "transfer").glob("tang-*.parquet"))):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut in half
    run_teacher_stage(teacher_cfg, splits, searched, cache_root())
    np.testing.assert_allclose(np.load(tdir / "logits_train.npy"), good, rtol=1e-4, atol=1e-4)
    assert all(p.stat().st_mtime_ns == t for p, t in whole.items())  # intact ones untouched
    ensure_importance(splits, searched, cache_root(), 1)
    assert set(np.load(tdir / "importance.npz").files) >= {"channels"}
    from corpus.augment import TransferSpec

    meta = json.loads(next((tdir / "transfer").glob("tang-*.json")).read_text())
    spec = TransferSpec(meta["recipe"], meta["size"], meta["seed"])
    meta = build_transfer(spec, splits, searched, cache_root(), 1)
    assert pd.read_parquet(tdir / "transfer" / f"{spec.name}.parquet").shape[0] == meta["size"]


def test_the_token_cap_is_a_search_dimension(tiny_bert, tiny_data, tmp_path):
    """--max-length (one row of spaces.student.DIMENSIONS) reaches the CLI, the sampler, the trial's student, its
    position table and the exported folder the runtime truncates with."""
    from corpus import load_splits
    from modeling import ClassifierConfig, EncoderClassifier
    from search.run import parse_args
    from teachers import load_encoder, resolve_teacher
    from trainables.student import student_config

    space = parse_args(["--max-length", "32", "128"]).space
    assert space.max_length == (32, 128) and parse_args([]).space.max_length == (128,)
    with pytest.raises(SystemExit):
        parse_args(["--max-length", "4"])  # under 8 tokens: one clear error from the space's check
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = set()
    for _ in range(20):
        t = study.ask()
        constants = sample_student(t, space)
        drawn.add(student_config({**t.params, **constants}, StudentConfig()).max_length)
        study.tell(t, 0.0)
    assert drawn == {32, 128}
    src = resolve_teacher(str(tiny_bert), tmp_path)
    encoder, tok = load_encoder(src)
    teacher = EncoderClassifier(encoder, ClassifierConfig(labels=("a", "b", "c", "d", "e"), pooling="cls"))
    cfg = StudentConfig(layers=1, hidden=96, heads=3, ffn=192, vocab=0, init="teacher", threads=1, max_length=32)
    student, stok = build_student(cfg, teacher, tok, load_splits(tiny_data).train.text.tolist(), None)
    assert student.encoder.embeddings.position_embeddings.num_embeddings == 32
    from inference import SentimentClassifier
    from modeling.onnx_export import export_folder

    clf = SentimentClassifier.load(export_folder(student, stok, tmp_path / "m"))
    assert clf.max_length == 32
    assert clf.logits(["слово " * 200]).shape == (1, 5)  # a long post is cut to the cap, not an error


def test_the_report_finds_the_runs_data_without_a_data_dir(searched, monkeypatch):
    """`python -m analysis --experiment E` after `search/run.py --data-dir D ...` (the README's full run): the splits
    come from the folder the run recorded in data.json, with no --data-dir, no $RUSENTIMENT_DATA_DIR, no network."""
    from analysis.report import portable_data
    from corpus import splits_from_record

    monkeypatch.delenv("RUSENTIMENT_DATA_DIR", raising=False)
    data = json.loads((searched / "data.json").read_text())
    splits = splits_from_record(data)
    assert len(splits.train) == data["sizes"]["train"] and splits.checksums == data["checksums"]
    assert portable_data(data)["dataset"]["data_dir"] == str(Path(*Path(data["dataset"]["data_dir"]).parts[-2:]))


@pytest.mark.slow  # five quantization passes
def test_each_quantization_form_quantizes_what_it_names(tiny_bert, tiny_data, tmp_path):
    """The graph of each form (modeling/onnx_export.py:QUANTIZATIONS), as the export writes it, has the operators its
    name promises: int8 quantizes every weight MatMul/Gemm, the fused attention (QAttention) and the embedding table
    (QEmbedLayerNormalization); per-channel has one weight scale per output channel; static int8 has
    Quantize/DequantizeLinear pairs and leaves the classifier head in fp32; int4 has MatMulNBits for every weight
    MatMul but the classifier head (a Gemm, which ONNX Runtime's int8 pass for the embeddings turns into an fp32
    MatMul); fp32 has no int8 tensor at all. Static int8 and int4 keep attention unfused (their passes take MatMuls)."""
    import onnx
    from onnx import numpy_helper

    from corpus import load_splits
    from modeling import ClassifierConfig, EncoderClassifier
    from modeling.onnx_export import QUANTIZATIONS, write_graph
    from teachers import load_encoder, resolve_teacher

    encoder, tok = load_encoder(resolve_teacher(str(tiny_bert), tmp_path))
    teacher = EncoderClassifier(encoder, ClassifierConfig(labels=("a", "b", "c", "d", "e"), pooling="cls"))
    texts = load_splits(tiny_data).train.text.tolist()
    cfg = StudentConfig(layers=1, hidden=96, heads=3, ffn=192, vocab=0, init="teacher", threads=1)
    student, stok = build_student(cfg, teacher, tok, texts, None)
    student.eval()
    enc = stok(texts[:16], padding=True, return_tensors="np")
    calibration = [{"input_ids": enc["input_ids"][i:i + 4].astype(np.int64),
                    "attention_mask": enc["attention_mask"][i:i + 4].astype(np.int64)} for i in range(0, 16, 4)]

    def graph(kind):
        path = write_graph(student, tmp_path / f"{kind}.onnx", kind, calibration)
        g = onnx.load(str(path)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        float_weight_ops = [n for n in g.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1
                            and n.input[1] in inits and inits[n.input[1]].dtype == np.float32]
        return g, inits, {n.op_type for n in g.node}, float_weight_ops

    table = student.encoder.embeddings.word_embeddings.weight.numel()  # the largest tensor: the word embeddings
    g, inits, ops, floats = graph("fp32")
    eight_bit = (np.int8, np.uint8)  # ONNX Runtime stores MatMul weights as int8, the Gather (embedding) data as uint8
    assert floats and not any(a.dtype in eight_bit for a in inits.values())
    assert {"Attention", "EmbedLayerNormalization"} <= ops  # the fused form (modeling/onnx_export.py:export_fp32)
    for kind in ("int8", "int8-per-channel"):
        g, inits, ops, floats = graph(kind)
        assert not floats, (kind, [n.name for n in floats])  # every weight MatMul/Gemm quantized
        assert {"QAttention", "QEmbedLayerNormalization"} <= ops and not {"Attention", "EmbedLayerNormalization"} & ops
        assert any(a.dtype in eight_bit and a.size == table for a in inits.values()), kind  # the embedding table too
        per_row = [a for name, a in inits.items() if name.endswith("_scale") and a.size > 1]
        assert bool(per_row) == (kind == "int8-per-channel"), kind
    g, inits, ops, floats = graph("int8-static")
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "Attention" not in ops  # its QKV stay MatMuls it quantizes
    head = [n for n in g.node if "logits" in n.output]
    assert head and head[0].op_type in ("Gemm", "MatMul") and inits[head[0].input[1]].dtype == np.float32
    g, inits, ops, floats = graph("int4")
    head_inputs = {i for n in g.node if "logits" in n.output for i in n.input}
    assert "MatMulNBits" in ops and "Attention" not in ops
    assert not [n for n in floats if not set(n.output) & (head_inputs | {"logits"})]
    assert set(QUANTIZATIONS) == {"int8", "fp32", "int8-per-channel", "int8-static", "int4"}


def test_asha_judges_a_trial_within_its_cost_band():
    """search/scheduler.py: with band edges, a fast student's rung cutoff comes only from fast students, so the best
    of them trains on where plain ASHA (no edges) stops it behind the big ones; the big ones' decisions are the
    same either way; the scheduler's state survives save/restore (a resumed search)."""
    import pickle
    from types import SimpleNamespace

    from search.scheduler import BandedASHA, cost_band, student_macs

    big, fast = {"layers": 4, "hidden": 256, "ffn": 1024}, {"layers": 1, "hidden": 128, "ffn": 256}
    assert student_macs(fast) == pytest.approx(0.131072) and student_macs(big) == pytest.approx(3.145728)
    assert (cost_band(fast, (0.3, 1.2)), cost_band(big, (0.3, 1.2))) == (0, 2)
    trials = [SimpleNamespace(trial_id=f"b{i}", config=big) for i in range(3)] + \
             [SimpleNamespace(trial_id=f"f{i}", config=fast) for i in range(3)]
    scores = [0.70, 0.71, 0.72, 0.60, 0.62, 0.64]

    def decisions(edges):
        s = BandedASHA(edges=edges, time_attr="round", metric="val_weighted_f1", mode="max", max_t=9,
                       grace_period=1, reduction_factor=3)
        for t in trials:
            s.on_trial_add(None, t)
        out = {t.trial_id: s.on_trial_result(None, t, {"round": 1, "val_weighted_f1": v})
               for t, v in zip(trials, scores)}
        return out, s

    plain, _ = decisions(())
    banded, s = decisions((0.3,))
    assert plain["f2"] == "STOP" and banded["f2"] == "CONTINUE"
    assert {k: v for k, v in plain.items() if k[0] == "b"} == {k: v for k, v in banded.items() if k[0] == "b"}
    restored = pickle.loads(pickle.dumps(s))
    assert restored.on_trial_result(None, trials[3], {"round": 3, "val_weighted_f1": 0.65}) == "CONTINUE"
