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
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots
from analysis.export import choose_trial

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


def _measure(name: str, runner, size_mib: float, params: int, splits, eval_runner=None) -> dict:
    """Test metrics (``eval_runner``: the same model with more threads, for speed) + the benchmark."""
    from inference.benchmark import benchmark_runner
    from modeling import classification_metrics

    t0 = time.time()
    pred = (eval_runner or runner).logits(splits.test.text.tolist(), 64).argmax(1)
    row = {"name": name, "params": int(params),
           **classification_metrics(splits.test.label.to_numpy(), pred, "test_")}
    row.update(benchmark_runner(runner, splits.val.text.tolist(), size_mib))
    row["measure_s"] = round(time.time() - t0, 1)
    log.info("%s: test weighted F1 %.4f, p50 %.3f ms, %.2f MiB", name, row["test_weighted_f1"],
             row["latency_ms_p50"], size_mib)
    return row, pred


def four_configurations(experiment: Path, trial: dict, splits, workdir: Path) -> tuple[list[dict], np.ndarray]:
    """Teacher, teacher + PTQ, chosen student, student + PTQ, all measured here; returns the rows and
    the int8 student's test predictions."""
    from inference import SentimentClassifier
    from inference.benchmark import folder_size_mib
    from modeling import EncoderClassifier
    from modeling.onnx_export import export_folder

    teacher, ttok = EncoderClassifier.load(experiment / "teacher" / "model")
    t_params = sum(p.numel() for p in teacher.parameters())
    rows = [_measure("teacher (fp32, torch)", TorchRunner(teacher, ttok, 1), _dir_mib(experiment / "teacher" / "model"),
                     t_params, splits)[0]]
    import torch

    torch.set_num_threads(2)
    folder = export_folder(teacher, ttok, workdir / "teacher_int8")
    rows.append(_measure("teacher + int8 PTQ (ONNX Runtime)", SentimentClassifier.load(folder, 1),
                         folder_size_mib(folder), t_params, splits, SentimentClassifier.load(folder, 2))[0])
    fp32_dir = experiment / "students_fp32" / trial["trial_id"]
    if fp32_dir.is_dir():
        student, stok = EncoderClassifier.load(fp32_dir)
        folder = export_folder(student, stok, workdir / "student_fp32", quantize=False)
        rows.append(_measure("student (fp32, ONNX Runtime)", SentimentClassifier.load(folder, 1), folder_size_mib(folder),
                             trial["params"], splits, SentimentClassifier.load(folder, 2))[0])
    folder = experiment / trial["model_dir"]
    row, pred = _measure("student + int8 PTQ (shipped form)", SentimentClassifier.load(folder, 1),
                         folder_size_mib(folder), trial["params"], splits, SentimentClassifier.load(folder, 2))
    rows.append(row)
    base = rows[0]
    for r in rows:
        r["compression_vs_teacher"] = base["size_mib"] / r["size_mib"]
        r["speedup_vs_teacher"] = base["latency_ms_p50"] / r["latency_ms_p50"]
    return rows, pred


def baseline(experiment: Path, splits, refresh: bool) -> dict:
    from analysis.baseline import tfidf_baseline

    path = experiment / "baseline_tfidf.json"
    if path.is_file() and not refresh:
        return json.loads(path.read_text())
    b = tfidf_baseline(splits)
    path.write_text(json.dumps(b, indent=2))
    return b


def build_report(experiment: Path, out: Path, data_dir: str | None = None, trial: str | None = None,
                 max_latency_ms: float | None = None, max_size_mb: float | None = None,
                 refresh_baseline: bool = False, before: Path | None = None,
                 labels: tuple[str, str] = ("before", "after")) -> dict:
    from analysis.markdown import report_markdown
    from corpus import LABELS, load_splits
    from search.provenance import provenance
    from sklearn.metrics import confusion_matrix, f1_score

    experiment = Path(experiment).resolve()
    data = json.loads((experiment / "data.json").read_text())
    splits = load_splits(data_dir, seed=data["seed"], max_train_samples=data.get("max_train_samples"),
                         val_from=data.get("val_from", "all"))
    chosen = choose_trial(experiment, trial, max_latency_ms, max_size_mb)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        configs, pred = four_configurations(experiment, chosen, splits, Path(tmp))
    base = baseline(experiment, splits, refresh_baseline)
    y = splits.test.label.to_numpy()
    trials = pd.read_csv(experiment / "trials.csv", dtype={"trial_id": str})
    front = pd.read_csv(experiment / "pareto.csv", dtype={"trial_id": str})
    report = {
        "experiment": str(experiment), "machine": provenance(), "data": data,
        "teacher": json.loads((experiment / "teacher" / "teacher.json").read_text()),
        "search": json.loads((experiment / "search.json").read_text()),
        "run": _load(experiment / "run.json"), "teacher_run": _load(experiment / "run_teacher.json"),
        "chosen": {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in chosen.items()},
        "selection": {"trial": trial, "max_latency_ms": max_latency_ms, "max_size_mb": max_size_mb,
                      "rule": "most accurate Pareto-front member on int8 validation weighted F1 within the limits"},
        "four_configurations": configs, "baseline": base,
        "old_report": OLD_REPORT,
        "per_class_f1": dict(zip(LABELS, map(float, f1_score(y, pred, average=None, labels=range(len(LABELS)))))),
        "confusion_matrix": {"labels": list(LABELS), "rows_true_cols_pred": confusion_matrix(y, pred).tolist()},
        "transfer_sets": [json.loads(p.read_text()) for p in sorted((experiment / "teacher" / "transfer").glob("*.json"))],
        "ablation": ablations(experiment),
        "option_costs": option_costs(trials),
        "before": {"experiment": str(before), "labels": list(labels)} if before else None,
        "plots": plots.write_all(trials, front, out, references(configs, base), _trials(before), labels),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str, ensure_ascii=False))
    (out / "report.md").write_text(report_markdown(report, trials, front))
    return report


OPTION_COLUMNS = ("transfer", "feature_kd", "hidden_kd")


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
    refs = [{"name": c["name"], "test_weighted_f1": c["test_weighted_f1"], "latency_ms_p50": c["latency_ms_p50"],
             "size_mib": c["size_mib"]} for c in configs if c["name"].startswith("teacher")]
    refs.append({"name": "TF-IDF + LinearSVC", "test_weighted_f1": base["test_weighted_f1"],
                 "latency_ms_p50": base["latency_ms_p50"], "size_mib": base["size_mib"]})
    return refs + OLD_REPORT


def ablations(experiment: Path) -> list[dict] | None:
    """Rows of every ``ablation*.csv`` in the experiment (``python -m search.ablation --tag``), with the study name."""
    frames = [pd.read_csv(p).assign(study=p.stem) for p in sorted(experiment.glob("ablation*.csv"))]
    return pd.concat(frames, ignore_index=True).to_dict(orient="records") if frames else None


def _trials(experiment: Path | None) -> pd.DataFrame | None:
    """An earlier search's trials, with the test figures of its front members."""
    if experiment is None:
        return None
    trials = pd.read_csv(Path(experiment) / "trials.csv", dtype={"trial_id": str})
    front = pd.read_csv(Path(experiment) / "pareto.csv", dtype={"trial_id": str})
    return plots._with_test(trials, front)


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None
