"""Export the chosen student as a self-contained folder (int8 ONNX, tokenizer, config, model card).

    python -m analysis.export --experiment experiments/rusentiment --out my-model [--trial ID]
        [--max-latency-ms 0.5] [--max-size-mib 5]

Without --trial: the most accurate Pareto-front member (int8 validation weighted F1) that fits the
limits. The folder is the one the trial itself exported and measured (one export path), with its
provenance added to ``config.json`` and a model card.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from inference.atomic import atomic_directory
from search.experiment import Experiment
from search.provenance import portable_command
from trainables.metrics import ACCURACY, EXPORT_BENCH_KEYS, EXPORTED
from analysis.model_card import model_card
from inference.classifier import CONFIG_FILE
from search.cli import add_options, from_args, option, positive_int, run_cli

log = logging.getLogger("analysis.export")


class ExportError(ValueError):
    pass


@dataclass(frozen=True)
class Selection:
    """which student: a given trial, else the most accurate member of the front within the limits (the options of
    ``python -m analysis`` and ``python -m analysis.export``)"""
    trial: str | None = option(None, "this trial id instead of the selection rule")
    max_latency_ms: float | None = option(None, "selection limit on median latency end to end (text in -> scores "
                                          "out, the search's objective), ms",
                                          parse=float)
    max_size_mib: float | None = option(None, "selection limit on the folder's size (MiB)",
                                        flags=("--max-size-mib", "--max-size-mb"), parse=float)
    table: str = option("trials", "choose among the rows of EXPERIMENT/TABLE.csv: trials (the search) or an "
                        "ablation tag")


def choose_trial(experiment: Path, trial: str | None, max_latency_ms: float | None, max_size_mb: float | None,
                 table_name: str = "trials") -> dict:
    """The trial to export: ``trial``, else the first by ``search.pareto.choose`` (``FIDELITY_RULE`` when the trials
    have fidelity figures, else ``CHOICE_RULE``) among the Pareto front (``pareto.csv``; for another table such as an
    ablation's, every row that is not failed or trivial) within the limits (end-to-end latency, size)."""
    from search.pareto import TRIVIAL, choose, limits_text

    table = Experiment(experiment).table(table_name)
    if not table.is_file():
        raise ExportError(f"{experiment}: no {table.name}; run the student search first (python search/run.py)"
                          + ("" if table_name == "trials" else " or the ablation (python -m studies.ablation)"))
    df = pd.read_csv(table, dtype={"trial_id": str})
    if trial:
        rows = df[df.trial_id == trial]
        if rows.empty:
            raise ExportError(f"trial {trial!r} is not in {table}; trials: {', '.join(df.trial_id.head(10))}...")
        row = rows.iloc[0]
        if row.status == "error" or not isinstance(row.get("model_dir"), str):
            raise ExportError(f"trial {trial} failed ({row.get('error')}); it has no model to export")
        if bool(row.get(TRIVIAL, False)):
            log.warning("trial %s is no better than the trivial predictor on validation (int8 weighted F1 %.4f)",
                        trial, row[ACCURACY])
        return row.to_dict()
    front_file = Experiment(experiment).front
    pool = pd.read_csv(front_file, dtype={"trial_id": str}) if front_file.is_file() and table_name == "trials" else df
    try:
        chosen = choose(pool, max_latency_ms, max_size_mb, n_val=validation_size(experiment))
    except ValueError as e:  # a table from before the objectives it is chosen on
        raise ExportError(f"{front_file if front_file.is_file() and table_name == 'trials' else table}: {e}") from e
    if chosen.empty:
        raise ExportError(f"no front member of {experiment} fits the limits ({limits_text(max_latency_ms, max_size_mb)}); "
                          f"relax --max-latency-ms / --max-size-mib or pass --trial")
    return chosen.iloc[0].to_dict()


def validation_size(experiment: Path) -> int | None:
    """How many validation posts the experiment's figures are on (``data.json``), or None when it does not say."""
    try:
        return int(Experiment(experiment).record("data")["sizes"]["val"])
    except (FileNotFoundError, KeyError, TypeError, ValueError):
        return None


def bench_texts_of(row: dict, given: int | None = None) -> int:
    """How many texts a re-measurement times: ``given``, else what the trial's own benchmark timed (its
    ``bench_texts``, the search's --bench-texts), else the default 300: the report and every export form then time
    the texts the search timed (``inference.benchmark.bench_sample``)."""
    if given is not None:
        return int(given)
    recorded = row.get("bench_texts")
    return int(recorded) if recorded is not None and not pd.isna(recorded) else 300


RUNTIME_PACKAGES = ("onnxruntime", "tokenizers", "numpy")


def add_runtime(folder: Path) -> None:
    """Copy the torch-free runtime (``inference/``) and its requirements into the folder, so that
    ``pip install -r requirements.txt && python -m inference --model . "текст"`` works there alone."""
    import importlib.metadata as md

    import inference

    shutil.copytree(Path(inference.__file__).parent, folder / "inference",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (folder / "requirements.txt").write_text("".join(f"{p}>={md.version(p)}\n" for p in RUNTIME_PACKAGES))


def student_record(config: dict, row) -> dict:
    """The trial's full StudentConfig as its trainable wrote it into the folder's ``config.json``
    (``provenance.student``); folders from before that record existed fall back to the table's columns."""
    from spaces.student import StudentConfig

    record = (config.get("provenance") or {}).get("student")
    if record:
        return record
    return {f.name: row.get(f.name) for f in fields(StudentConfig) if f.name in row}


def calibration_batches(texts: list[str], tokenizer, prefix: str, max_length: int, posts: int, seed: int):
    """``posts`` seeded training posts, one per batch at its own length (as the runtime feeds them)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for i in rng.choice(len(texts), size=min(posts, len(texts)), replace=False):
        ids = np.asarray([tokenizer(prefix + texts[i], truncation=True, max_length=max_length)["input_ids"]],
                         dtype=np.int64)
        yield {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def export_form(experiment: Path, row: dict, form: str, out: Path, data_dir: str | None = None,
                 calibration_posts: int = 200, bench_texts: int | None = None) -> tuple[Path, dict]:
    """The trial's fp32 student (``<models>_fp32/<trial>``) exported in quantization ``form``
    (``modeling.onnx_export.QUANTIZATIONS``) to ``out`` and measured there as the search measures a
    trial: validation and test figures by the torch-free runtime, size and latency by the one
    benchmark. Static int8 takes its activation ranges from ``calibration_posts`` training posts."""
    from corpus import splits_from_record
    from inference.benchmark import benchmark
    from modeling import EncoderClassifier
    from modeling.onnx_export import export_folder
    from search.student_stage import evaluate_folder

    model_dir = row["model_dir"]
    fp32_dir = Experiment(experiment).fp32_model(model_dir)
    if not fp32_dir.is_dir():
        raise ExportError(f"{fp32_dir}: the trial's fp32 student is missing; only --quantization int8 (the "
                          f"trial's own folder) can be exported")
    data = Experiment(experiment).record("data")
    splits = splits_from_record(data, data_dir)
    model, tokenizer = EncoderClassifier.load(fp32_dir)
    model.eval()
    calibration = None
    if form == "int8-static":
        calibration = calibration_batches(splits.train.text.tolist(), tokenizer, model.config.text_prefix,
                                          model.config.max_length, calibration_posts, data["seed"])
    own = json.loads((experiment / model_dir / CONFIG_FILE).read_text())  # the trial's own record of its student
    expert = None
    if own.get("expert"):  # the trial's gold expert, at the weight the trial chose, goes with every form
        from inference import SentimentClassifier

        expert = SentimentClassifier.load(experiment / model_dir).expert
    folder = export_folder(model, tokenizer, out, quantize=form, calibration=calibration,
                           provenance={"student": student_record(own, row)}, expert=expert,
                           expert_info={k: v for k, v in (own.get("expert") or {}).items()
                                        if k in ("weight", "weight_rule", "gate", "fit")})
    figures, _ = evaluate_folder(folder, {"val": splits.val, **({"test": splits.test} if splits.has_test else {})})
    bench = benchmark(folder, splits.val.text.tolist(), bench_texts_of(row, bench_texts))
    return folder, {**{f"export_{k}" if k.startswith("val_") else k: v for k, v in figures.items()},
                    **{k: bench[k] for k in EXPORT_BENCH_KEYS},
                    "quantization_form": form}


def calibrate(folder: Path, data: dict, data_dir: str | None) -> dict:
    """Fit the folder's class bias on the validation posts (``modeling/calibration.py``), write it into its
    ``config.json``, and measure test (and out-of-domain) again: the figures of the folder as exported."""
    from corpus import splits_from_record
    from corpus.rusentiment import ood_test_for
    from inference import SentimentClassifier
    from modeling.calibration import cross_fitted_gain, fit_class_bias, set_class_bias
    from search.student_stage import evaluate_folder

    splits = splits_from_record(data, data_dir)
    y = splits.val.label.to_numpy()
    clf = SentimentClassifier.load(folder, threads=2)
    clf.class_bias = None  # fitted on the trial's own answers, never on top of an earlier bias
    answers = clf.logits(splits.val.text.tolist(), 64)
    bias = fit_class_bias(answers, y)
    gain = cross_fitted_gain(answers, y, seed=int(data.get("seed", 13)))
    set_class_bias(folder, bias, gain)
    log.info("class bias %s (validation weighted F1 %+.4f cross-fitted)",
             dict(zip(splits.labels, bias.round(3).tolist())), gain["val_wf1_gain_cv"])
    ood = ood_test_for(splits)
    tests = {**({"test": splits.test} if splits.has_test else {}), **({"ood": ood} if ood is not None else {})}
    figures, _ = evaluate_folder(folder, tests)
    return {k: v for k, v in figures.items() if not k.startswith(("test_student_", "ood_student_", "test_expert_",
                                                                    "ood_expert_"))}


def export(experiment: Path, out: Path, trial: str | None = None, max_latency_ms: float | None = None,
           max_size_mb: float | None = None, with_runtime: bool = True, table: str = "trials",
           quantization: str = "int8", data_dir: str | None = None, class_bias: str = "fit",
           bench_texts: int | None = None) -> Path:
    """The chosen trial's folder (``int8``: the one the trial exported and measured) or, for another
    quantization form, a fresh export of its fp32 student measured in ``export_form``. ``class_bias="fit"``: a
    class-prior bias fitted on validation is added to its answers (``calibrate``), and its test (and
    out-of-domain) figures are measured again with it. ``bench_texts``: texts a re-exported form's benchmark times
    (default: the trial's, ``bench_texts_of``)."""
    import tempfile

    experiment = Path(experiment)
    row = choose_trial(experiment, trial, max_latency_ms, max_size_mb, table)
    src = experiment / row["model_dir"]
    if not (src / "model.onnx").is_file():
        raise ExportError(f"{src}: the trial's model folder is missing or incomplete")
    with tempfile.TemporaryDirectory() as scratch:  # holds a re-exported form until it is copied out
        if quantization != "int8":
            src, measured = export_form(experiment, row, quantization, Path(scratch) / "model", data_dir,
                                          bench_texts=bench_texts)
            row = {**row, **measured}  # the figures of the form exported, not of the trial's int8 folder
        layout = Experiment(experiment)
        data, teacher, run = layout.record("data"), layout.record("teacher_record"), layout.record("run", missing_ok=True)
        out = Path(out)
        with atomic_directory(out) as tmp:
            for f in src.iterdir():
                shutil.copy2(f, tmp / f.name)
            if class_bias == "fit":
                row = {**row, **calibrate(tmp, data, data_dir)}
            config = json.loads((tmp / CONFIG_FILE).read_text())
            config["provenance"] = {
                "teacher": teacher["stage"]["teacher"], "teacher_test": teacher.get("test"),
                "soft_labels": teacher.get("soft_labels"),  # set when studies.soft_labels installed other logits
                "data_checksums": data["checksums"], "split_seed": data["seed"], "experiment": experiment.resolve().name,
                # the trainable's own record of the student (every StudentConfig field), not a rebuild from the table
                "trial_id": row["trial_id"], "trial": {**student_record(config, row),
                                                       **{k: row.get(k) for k in ("row", "overrides") if k in row}},
                "metrics": {k: row.get(k) for k in EXPORTED if k in row}, "folder_name": out.name,
                "command": portable_command((run.get("provenance") or {}).get("command")) if table == "trials" else
                f"python -m studies.ablation --experiment {experiment.resolve().name} --tag {table} (row {row.get('row')}: "
                f"{row.get('overrides')})", "cpu": (run.get("provenance") or {}).get("cpu"),
                "git_commit": (run.get("provenance") or {}).get("git_commit"),
            }
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False, default=str))
            (tmp / "README.md").write_text(model_card(config, data, with_runtime))
            if with_runtime:
                add_runtime(tmp)
    return out


def main(argv=None) -> int:
    from modeling.onnx_export import QUANTIZATIONS

    p = argparse.ArgumentParser(prog="python -m analysis.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    add_options(p, Selection)
    p.add_argument("--quantization", default="int8", choices=list(QUANTIZATIONS),
                   help="int8: the trial's own folder, as measured in the search; another form re-exports the "
                        "trial's fp32 student and measures it (docs/results.md: each form's size, latency, F1)")
    p.add_argument("--data-dir", default=None, help="where the experiment's data is, if it moved")
    p.add_argument("--class-bias", default="fit", choices=("fit", "none"),
                   help="fit: add a class-prior bias fitted on the validation posts to the folder's answers "
                        "(config.json class_bias; docs/results.md: +.010 cross-fitted validation weighted F1); "
                        "the card's test figures are measured again with it. none: the trial's answers as they are")
    p.add_argument("--bench-texts", type=positive_int, default=None,
                   help="texts timed when a re-exported form is measured (default: the search's --bench-texts, as "
                        "the trial recorded it)")
    p.add_argument("--without-runtime", action="store_true",
                   help="leave out the copy of inference/ and requirements.txt (for a folder kept inside this "
                        "repository, such as the shipped default model, whose runtime is the repository's own)")
    a = p.parse_args(argv)
    s = from_args(Selection, a)
    from corpus import DataError

    def work() -> int:
        path = export(a.experiment, a.out, s.trial, s.max_latency_ms, s.max_size_mib, not a.without_runtime, s.table,
                      a.quantization, a.data_dir, a.class_bias, a.bench_texts)
        print(f"exported {path}")
        return 0

    return run_cli(work, (ExportError, FileNotFoundError, DataError), log)


if __name__ == "__main__":
    sys.exit(main())
