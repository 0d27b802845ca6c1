"""The experiment report: ``python -m analysis --experiment DIR [--out DIR]``.

Measures, in one run on this machine: the fp32 torch teacher, the teacher after int8 PTQ (the same
export path as the students), the chosen student in fp32 (ONNX) and after int8 PTQ, and the
TF-IDF + LinearSVC baseline; then writes ``report.md``, ``report.json`` and the plots
(``pareto_latency.png``, ``pareto_size.png``, ``pareto_before_after.png``). The test set is
evaluated here for the front members (by the search), the four configurations and the baseline,
never for selection: the chosen student is the most accurate front member on *validation* within
the limits.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots
from analysis.interactive import write_html
from analysis.export import choose_trial
from inference.atomic import atomic_file, write_json, write_text
from search.experiment import Experiment
from trainables.metrics import LATENCY

log = logging.getLogger(__name__)
OLD_REPORT = [{"name": "old report: rubert-tiny2 fp32 (accuracy)", "test_accuracy": 0.5345, "size_mib": 111.4 / 1.048576},
              {"name": "old report: student + PTQ (accuracy)", "test_accuracy": 0.5125, "size_mib": 85.5 / 1.048576}]


class TorchRunner:
    """A torch ``EncoderClassifier`` behind the interface ``inference.benchmark`` times."""

    def __init__(self, model, tokenizer, threads: int = 1):
        import torch

        torch.set_num_threads(threads)
        self.model, self.tok = model.eval(), tokenizer
        self.prefix, self.max_length = model.config.text_prefix, model.config.max_length

    def encode(self, texts):
        enc = self.tok([self.prefix + t for t in texts], padding=True, truncation=True, max_length=self.max_length,
                       return_tensors="np")
        return enc["input_ids"], enc["attention_mask"]

    def run(self, ids, mask):
        import torch

        with torch.no_grad():
            return self.model(torch.as_tensor(ids), torch.as_tensor(mask)).numpy()

    def logits(self, texts, batch_size: int = 32):
        return np.concatenate([self.run(*self.encode(texts[i:i + batch_size])) for i in range(0, len(texts), batch_size)])


def _dir_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def _measure(name: str, runner, size_mib: float, params: int, splits, eval_runner=None, ood=None,
             n_latency: int = 300) -> dict:
    """Test (and out-of-domain ``ood``) metrics with bootstrap 95 % intervals of weighted F1
    (``eval_runner``: the same model with more threads, for speed) + the benchmark. Returns the row
    and the predictions {"test": ..., "ood": ...}; the benchmark times ``n_latency`` validation texts."""
    from inference.benchmark import benchmark_runner
    from modeling import classification_metrics
    from modeling.metrics import bootstrap_interval

    t0 = time.time()
    row, preds = {"name": name, "params": int(params)}, {}
    for split, df in (("test", splits.test), ("ood", ood)):
        if df is None:
            continue
        preds[split] = (eval_runner or runner).logits(df.text.tolist(), 64).argmax(1)
        row.update(classification_metrics(df.label.to_numpy(), preds[split], f"{split}_"))
        row[f"{split}_wf1_low"], row[f"{split}_wf1_high"] = bootstrap_interval(df.label.to_numpy(), preds[split])
    pred = preds
    row.update(benchmark_runner(runner, splits.val.text.tolist(), size_mib, n_latency))
    row["measure_s"] = round(time.time() - t0, 1)
    log.info("%s: test weighted F1 %.4f, p50 %.3f ms, %.2f MiB", name, row["test_weighted_f1"],
             row["latency_ms_p50"], size_mib)
    return row, pred


def four_configurations(experiment: Path, trial: dict, splits, workdir: Path, ood=None,
                        n_latency: int = 300) -> tuple[list[dict], dict]:
    """Teacher, teacher + PTQ, chosen student, student + PTQ, all measured here; returns the rows and
    the int8 student's test (and out-of-domain) predictions."""
    from inference import SentimentClassifier
    from inference.benchmark import folder_size_mib
    from modeling import EncoderClassifier
    from modeling.onnx_export import export_folder

    teacher_model = Experiment(experiment).teacher_model
    teacher, ttok = EncoderClassifier.load(teacher_model)
    t_params = sum(p.numel() for p in teacher.parameters())
    rows = [_measure("teacher (fp32, torch)", TorchRunner(teacher, ttok, 1), _dir_mib(teacher_model),
                     t_params, splits, ood=ood, n_latency=n_latency)[0]]
    import torch

    torch.set_num_threads(2)
    folder = export_folder(teacher, ttok, workdir / "teacher_int8")
    rows.append(_measure("teacher + int8 PTQ (ONNX Runtime)", SentimentClassifier.load(folder, 1),
                         folder_size_mib(folder), t_params, splits, SentimentClassifier.load(folder, 2), ood, n_latency)[0])
    fp32_dir = Experiment(experiment).fp32_model(trial["model_dir"])  # students_fp32/ or <tag>_students_fp32/
    shipped = SentimentClassifier.load(experiment / trial["model_dir"], 1)
    fused = " + gold expert" if shipped.fused else ""  # the fp32 form carries the same expert at the same weight
    if fp32_dir.is_dir():
        from modeling.expert import set_weight

        student, stok = EncoderClassifier.load(fp32_dir)
        folder = export_folder(student, stok, workdir / "student_fp32", quantize=False,
                               expert=shipped.expert if shipped.fused else None)
        if shipped.fused:
            set_weight(folder, shipped.expert_weight, gate=shipped.gate)
        rows.append(_measure(f"student (fp32, ONNX Runtime){fused}", SentimentClassifier.load(folder, 1),
                             folder_size_mib(folder), trial["params"], splits, SentimentClassifier.load(folder, 2), ood,
                             n_latency)[0])
    folder = experiment / trial["model_dir"]
    row, pred = _measure(f"student + int8 PTQ{fused} (shipped form)", SentimentClassifier.load(folder, 1),
                         folder_size_mib(folder), trial["params"], splits, SentimentClassifier.load(folder, 2), ood, n_latency)
    rows.append(row)
    base = rows[0]
    for r in rows:
        r["compression_vs_teacher"] = base["size_mib"] / r["size_mib"]
        r["speedup_vs_teacher"] = base["latency_ms_p50"] / r["latency_ms_p50"]
        r["e2e_speedup_vs_teacher"] = base["e2e_ms_p50"] / r["e2e_ms_p50"]
    return rows, pred


def portable_teacher(record: dict) -> dict:
    """The teacher record without this machine's paths: a local source directory becomes its folder name
    (a hub id stays as it is)."""
    source = dict(record.get("source") or {})
    if source.get("location") and Path(source["location"]).is_absolute():
        source["location"] = Path(source["location"]).name
    return {**record, "source": source} if source else record


def baseline(experiment: Path, splits, ood=None, n_latency: int = 300) -> tuple[dict, dict]:
    """The TF-IDF baseline, fitted and measured now, in this run (never read from an earlier one):
    its figures and predictions ({"test": ..., "ood": ...}), also written beside the report's inputs
    (``baseline_tfidf.json`` / ``_pred.npz``) for paired comparisons by other tools."""
    from analysis.baseline import tfidf_baseline

    b, preds = tfidf_baseline(splits, n_latency, ood=ood)
    with atomic_file(Experiment(experiment).baseline("_pred.npz")) as tmp:
        np.savez(tmp, **preds)
    write_json(Experiment(experiment).baseline(".json"), b)
    return b, preds


def expert_parts(folder: Path, splits, ood, fused_preds: dict) -> dict | None:
    """For a student fused with a gold expert: the student alone and the expert alone on test (and
    out of domain), each with the paired bootstrap of (fused - part) over the same posts; the weight."""
    from inference import SentimentClassifier
    from modeling import classification_metrics
    from modeling.metrics import paired_bootstrap

    clf = SentimentClassifier.load(folder, threads=2)
    if clf.expert is None:
        return None
    out = {"weight": clf.expert_weight, "weight_rule": clf.config["expert"].get("weight_rule"),
           "fit": clf.config["expert"].get("fit"), "buckets": clf.expert.spec.buckets}
    for split, df in (("test", splits.test), ("ood", ood)):
        if df is None or split not in fused_preds:
            continue
        y, texts = df.label.to_numpy(), df.text.tolist()
        parts = {"student alone": clf.student_logits(texts, 64).argmax(1),
                 "expert alone": clf.expert_log_probs(texts).argmax(1)}
        out[split] = {name: {**classification_metrics(y, pred), "fused_minus_this": paired_bootstrap(
            y, fused_preds[split], pred)} for name, pred in parts.items()}
    return out


def versus_baseline(splits, ood, student_pred: dict, base_pred: dict) -> dict:
    """Paired bootstrap of weighted F1, int8 student minus TF-IDF, on test and out of domain."""
    from modeling.metrics import paired_bootstrap

    out = {}
    for split, df in (("test", splits.test), ("ood", ood)):
        if df is not None and split in student_pred and split in base_pred:
            out[split] = paired_bootstrap(df.label.to_numpy(), student_pred[split], base_pred[split])
    return out


def ranking_agreement(table: pd.DataFrame, before: Path | None) -> dict:
    """Spearman correlation between int8 validation and test weighted F1 over the students that
    have both: on this experiment's split, and on ``before``'s (an experiment with another split)."""
    from scipy.stats import spearmanr

    def rho(df):
        if "test_weighted_f1" not in df:  # no test split
            return {"students": 0, "spearman": None}
        df = df.dropna(subset=["int8_val_weighted_f1", "test_weighted_f1"])
        if len(df) < 3:
            return {"students": int(len(df)), "spearman": None}
        return {"students": int(len(df)),
                "spearman": float(spearmanr(df.int8_val_weighted_f1, df.test_weighted_f1).statistic)}

    out = {"this": rho(table)}
    if before is not None and Experiment(Path(before)).front.is_file():
        earlier = Experiment(Path(before))
        out["before"] = {**rho(pd.read_csv(earlier.front)), "val_from": earlier.record("data").get("val_from", "all")}
    return out


def portable_data(data: dict) -> dict:
    """``data.json`` as a committed report shows it: the data folder and the own-data files (train / val / test) by
    their last two parts, not this machine's path (a hub dataset name stays as it is)."""
    dataset = dict(data.get("dataset") or {})
    def portable(path):
        return str(Path(*Path(path).parts[-2:])) if isinstance(path, str) and Path(path).is_absolute() else path

    for key in ("data_dir", "train", "val", "test"):
        if key in dataset:
            dataset[key] = portable(dataset[key])
    out = {**data, "dataset": dataset}
    if isinstance(data.get("checksums"), dict):  # own data: keyed by the files' paths
        out["checksums"] = {portable(k): v for k, v in data["checksums"].items()}
    return out


def build_report(experiment: Path, out: Path, data_dir: str | None = None, trial: str | None = None,
                 max_latency_ms: float | None = None, max_size_mb: float | None = None,
                 before: Path | None = None,
                 labels: tuple[str, str] = ("before", "after"), table: str = "trials",
                 ood_test: str | None = None, bench_texts: int | None = None) -> dict:
    from analysis.export import bench_texts_of
    from analysis.markdown import dataset_title, report_markdown
    from corpus import splits_from_record
    from search.pareto import (CHOICE_RULE, FIDELITY_RULE, TRIVIAL, fidelity_applies, limits_text, mark_trivial,
                               trivial_weighted_f1)
    from corpus.rusentiment import load_ood_test, ood_test_path
    from search.provenance import provenance
    from sklearn.metrics import confusion_matrix, f1_score

    experiment = Path(experiment).resolve()
    layout = Experiment(experiment)
    data = layout.record("data")
    splits = splits_from_record(data, data_dir)
    figures_on = "test"
    if not splits.has_test:  # own data without a test file: every "test" figure below is on validation
        splits, figures_on = replace(splits, test=splits.val), "validation (no test file was given)"
        log.warning("no test split: the report's figures are on validation, which also selected the student")
    labels_ = splits.labels
    chosen = choose_trial(experiment, trial, max_latency_ms, max_size_mb, table)
    bench_texts = bench_texts_of(chosen, bench_texts)
    ood_path = ood_test_path(splits, ood_test)
    ood = load_ood_test(ood_path) if ood_path else None
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        configs, preds = four_configurations(experiment, chosen, splits, Path(tmp), ood, bench_texts)
    pred = preds["test"]
    base, base_preds = baseline(experiment, splits, ood, bench_texts)
    y = splits.test.label.to_numpy()
    trials = pd.read_csv(layout.table(table), dtype={"trial_id": str})
    trivial_bar = trivial_weighted_f1(splits.val.label)
    if TRIVIAL not in trials:  # a table from before the rule: marked now, with the same rule
        trials, _ = mark_trivial(trials, splits.val.label)
    front_file = layout.front
    front = pd.read_csv(front_file, dtype={"trial_id": str}) if table == "trials" and front_file.is_file() else \
        trials[trials.status != "error"]
    report = {
        "experiment": experiment.name, "machine": provenance(), "data": portable_data(data), "figures_on": figures_on,
        "teacher": portable_teacher(layout.record("teacher_record")),
        "search": _load(layout.search) if table == "trials" else None, "table": table,
        "ood_test": str(Path(*Path(ood_path).parts[-2:])) if ood_path else None,
        "versus_baseline": versus_baseline(splits, ood, preds, base_preds),
        "expert_parts": expert_parts(experiment / chosen["model_dir"], splits, ood, preds),
        "ranking_agreement": ranking_agreement(front, before),
        "run": _load(layout.run),
        "chosen": {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in chosen.items()},
        "selection": {"trial": trial, "max_latency_ms": max_latency_ms, "max_size_mb": max_size_mb,
                      "rule": FIDELITY_RULE if not trial and fidelity_applies(front, len(splits.val)) else CHOICE_RULE,
                      "limits": limits_text(max_latency_ms, max_size_mb)},
        "fidelity": fidelity_figures(experiment, chosen),
        "trivial": {"val_weighted_f1": trivial_bar,
                    "trials": trials.trial_id[trials[TRIVIAL].fillna(False).astype(bool)].tolist()},
        "bench_texts": bench_texts,
        "four_configurations": configs, "baseline": base,
        "old_report": OLD_REPORT,
        "per_class_f1": dict(zip(labels_, map(float, f1_score(y, pred, average=None, labels=range(len(labels_)))))),
        "confusion_matrix": {"labels": list(labels_),
                             "rows_true_cols_pred": confusion_matrix(y, pred, labels=range(len(labels_))).tolist()},
        "transfer_sets": [json.loads(p.read_text()) for p in sorted(layout.transfer.glob("*.json"))],
        "ablation": ablations(experiment),
        "ablation_parts": ablations(experiment, "_parts"),
        "option_costs": option_costs(trials),
        "before": {"experiment": Path(before).name, "labels": list(labels)} if before else None,
        "plots": plots.write_all(trials, front, out, references(configs, base), _trials(before), labels, chosen),
    }
    teacher_val = report["teacher"]["val"]["weighted_f1"]
    marks = [{**configs[0], "name": "teacher (fp32)", "val_weighted_f1": teacher_val},
             {**base, "name": "TF-IDF + LinearSVC"}]
    report["html"] = write_html(trials, front, marks, out, _trials(before), labels,
                                title=f"Student search on {dataset_title(data)}: {experiment.name} ({table})")
    write_json(out / "report.json", report)
    write_text(out / "report.md", report_markdown(report, trials, front))
    return report


OPTION_COLUMNS = ("init", "transfer", "feature_kd", "hidden_kd", "lexical_buckets")


def fidelity_figures(experiment: Path, chosen: dict) -> dict | None:
    """The chosen folder's fidelity to the teacher on the held-out slice (``corpus.fidelity``): overall agreement
    and KL, agreement per source, and how many texts each source has; None without a slice."""
    from modeling.metrics import folder_fidelity
    from search.transfer_stage import load_fidelity

    slice_ = load_fidelity(experiment)
    if slice_ is None or not isinstance(chosen.get("model_dir"), str):
        return None
    figures = folder_fidelity(experiment / chosen["model_dir"], slice_, threads=2)
    counts = pd.Series(slice_.sources).value_counts()
    return {"texts": len(slice_.texts), "per_source_texts": {k: int(counts[k]) for k in slice_.names},
            **{k: round(v, 4) for k, v in figures.items()}}


def option_costs(trials: pd.DataFrame) -> list[dict]:
    """Per value of each distillation option in the search: trials, median training seconds per round
    (a quarter of an epoch) and the best int8 validation weighted F1 — the time each option costs, read
    from ``trials.csv`` (medians mix the architectures the trials drew)."""
    rows = []
    for col in OPTION_COLUMNS:
        if col not in trials or trials[col].nunique(dropna=True) < 2:
            continue
        for value, g in trials.groupby(col):
            rows.append({"option": col, "value": value, "trials": int(len(g)),
                         "median_round_train_s": float(g.round_train_s.median()),
                         "median_params": float(g.params.median()),
                         "best_int8_val_weighted_f1": float(g.int8_val_weighted_f1.max())})
    return rows


def references(configs: list[dict], base: dict) -> list[dict]:
    """The systems the plots mark beside the students, at their end-to-end latency (the students' axis)."""
    refs = [{"name": c["name"], "test_weighted_f1": c["test_weighted_f1"], LATENCY: c[LATENCY],
             "size_mib": c["size_mib"]} for c in configs if c["name"].startswith("teacher")]
    refs.append({"name": "TF-IDF + LinearSVC", "test_weighted_f1": base["test_weighted_f1"],
                 LATENCY: base[LATENCY], "size_mib": base["size_mib"]})
    return refs + OLD_REPORT


def ablations(experiment: Path, suffix: str = "") -> list[dict] | None:
    """Rows of every ablation's table in the experiment (``python -m studies.ablation --tag T``: ``T.csv``, or with
    ``suffix="_parts"`` its ``T_parts.csv``, the student alone / fused), each with its study's tag."""
    layout = Experiment(experiment)
    frames = [pd.read_csv(layout.table(tag + suffix)).assign(study=tag) for tag in layout.study_tags("ablation", "rows_resolved")
              if layout.table(tag + suffix).is_file()]
    return pd.concat(frames, ignore_index=True).to_dict(orient="records") if frames else None


def _trials(experiment: Path | None) -> pd.DataFrame | None:
    """An earlier search's trials, with the test figures of its front members."""
    if experiment is None:
        return None
    layout = Experiment(Path(experiment))
    trials = pd.read_csv(layout.table(), dtype={"trial_id": str})
    front = pd.read_csv(layout.front, dtype={"trial_id": str})
    return plots._with_test(trials, front)


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None
