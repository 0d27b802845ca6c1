"""What each lever adds, on one fixed student: ``python -m studies.ablation``.

Runs the student trainable (the same KD -> int8 PTQ -> benchmark path as the search) once per row,
everything else fixed, through a Ray Tune grid. A row is ``NAME:FIELD=VALUE,FIELD=VALUE`` over
``spaces.student.StudentConfig`` fields on top of ``--base`` (the fixed student), e.g.
``pruned:init=pruned`` or ``real+lex:init=pruned,transfer=real,lexical_buckets=131072``. Writes
``<tag>.csv`` / ``<tag>.json`` in the experiment directory: per row int8 validation, test and
out-of-domain weighted F1 with bootstrap 95 % intervals, the paired test difference to the first
row, and its cost in seconds. Transfer sets named by the rows are built (or reused) first. Test
and out-of-domain figures are for the report only; nothing is selected on them.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.cli import add_options, from_args, option, run_cli  # noqa: E402

log = logging.getLogger("studies.ablation")
# the fixed student of the knowledge-students ablation: 4 of the teacher's 12 layers, 256 of 384 channels
DEFAULT_BASE = ("layers=4,hidden=256,heads=8,ffn=512,vocab=8000,epochs=3,lr=3e-4,kd_alpha=0.7,kd_temperature=2,"
                "transfer_ratio=0.5")
# the lexical parts (issue 22): no lexical part / the KD-trained branch / the gold expert / both, from two trained
# students (each row with the expert reports the student alone and fused: lexical_parts)
DEFAULT_ROWS = ("real:init=pruned,transfer=real,expert_buckets=131072",
                "real+kd-lexical:init=pruned,transfer=real,lexical_buckets=65536,expert_buckets=131072")


@dataclass
class AblationConfig:
    """the ablation: a fixed student, one row per lever"""
    experiment: str = option(help="experiment directory written by search/run.py")
    data_dir: str | None = option(None, "the RuSentiment folder (else the one data.json records)")
    base: str = option(DEFAULT_BASE, "the fixed student: FIELD=VALUE,... over StudentConfig")
    rows: tuple[str, ...] = option(DEFAULT_ROWS, "NAME:FIELD=VALUE,... one per ablation row", nargs="+")
    transfer: tuple[str, ...] = option(("real:40000", "tang:26000"), "transfer sets (as in search/run.py)",
                                       nargs="*")
    transfer_texts: str | None = option(None, "unlabelled text for real:SIZE sets (else "
                                        "<data dir>/../transfer/transfer_texts.csv)")
    broad_texts: str | None = option(None, "unlabelled text of other domains for broad:SIZE sets (else "
                                     "<data dir>/../transfer-broad/broad_texts.csv)")
    ood_test: str | None = option(None, "an out-of-domain label,text test file, report only (else "
                                  "<data dir>/../rusentitweet/rusentitweet_test.csv)")
    cpus_per_trial: int = option(1, "CPUs per row's trial")
    seed: int = option(13, "the students' seed")
    tag: str = option("ablation", "names the outputs inside the experiment: <tag>.csv, <tag>.json, <tag>_trials/, "
                      "<tag>_students/")
    collect_only: bool = option(False, "only write the tables from the trials already in <tag>_trials (an "
                                "interrupted run; no training)")


def parse_overrides(text: str, where: str) -> dict:
    """``FIELD=VALUE,...`` over StudentConfig fields, values typed like the field's default."""
    from spaces.student import StudentConfig

    # typed like the default; the optional (None-default) fields are numbers (max_size_mib)
    types = {f.name: float if f.default is None else type(f.default) for f in fields(StudentConfig)}
    out = {}
    for part in filter(None, text.split(",")):
        key, eq, value = part.partition("=")
        if not eq or key not in types:
            raise ValueError(f"{where}: {part!r} is not FIELD=VALUE over a student field; fields: {', '.join(types)}")
        kind = types[key] if types[key] in (int, float, str) else str
        try:
            out[key] = kind(float(value)) if kind is int else kind(value)
        except ValueError:
            raise ValueError(f"{where}: {key}={value!r} is not a {kind.__name__}") from None
    return out


def parse_rows(rows: tuple[str, ...]) -> dict[str, dict]:
    out = {}
    for text in rows:
        name, colon, spec = text.partition(":")
        if not colon or not name:
            raise ValueError(f"--rows {text!r}: expected NAME:FIELD=VALUE,... such as pruned:init=pruned")
        if name in out:
            raise ValueError(f"--rows: the name {name!r} is used twice")
        out[name] = parse_overrides(spec, f"--rows {name}")
    return out


def parse_args(argv=None) -> AblationConfig:
    p = argparse.ArgumentParser(prog="python -m studies.ablation", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_options(p, AblationConfig)
    return from_args(AblationConfig, p.parse_args(argv))


def run_ablation(cfg: AblationConfig) -> dict:
    import ray
    from ray import tune

    from corpus import splits_from_record
    from corpus.rusentiment import ood_test_for
    from corpus.transfer_text import Pools, default_broad_texts, default_transfer_texts
    from search.experiment import Experiment
    from search.student_stage import StudentStageConfig, make_data, prepare_teacher_outputs
    from search.transfer_stage import parse_transfer
    from spaces.student import StudentConfig, StudentSpace
    from trainables.bench_slot import start_benchmark_slot
    from trainables.student import train_student

    experiment = Path(cfg.experiment).resolve()
    layout = Experiment(experiment)
    data = layout.record("data")
    splits = splits_from_record(data, cfg.data_dir)
    shared = StudentConfig(threads=cfg.cpus_per_trial, seed=cfg.seed, evals_per_epoch=1)  # what no row sets
    base = parse_overrides(cfg.base, "--base")
    rows = {name: {**base, **over} for name, over in parse_rows(cfg.rows).items()}
    for name, row in rows.items():
        StudentConfig(**row)  # every row is a valid student before anything runs
    used = {r for row in rows.values() for r in row.get("transfer", "none").split("+")} - {"none"}
    specs = tuple(s for s in (parse_transfer(t, cfg.seed, len(splits.train)) for t in cfg.transfer) if s.recipe in used)
    missing = used - {s.recipe for s in specs}
    if missing:
        raise ValueError(f"rows use transfer sets {sorted(missing)} that --transfer does not build")
    ood = ood_test_for(splits, cfg.ood_test)
    extra = {"ood": ood} if ood is not None else {}
    t0 = time.time()
    if cfg.collect_only:
        from ray.tune import ExperimentAnalysis, ResultGrid

        path = layout.study_trials(cfg.tag)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no ablation trials to collect; run without --collect-only")
        results = [r for r in ResultGrid(ExperimentAnalysis(str(path))) if (r.metrics or {}).get("round")]
        return _write(cfg, experiment, results, splits, extra, rows, shared, t0)
    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, configure_logging=False)
    offered = {name: tuple({r.get(name, getattr(shared, name)) for r in rows.values()})  # what the rows need
               for name in ("feature_kd", "hidden_kd", "expert_buckets", "init", "fused_weight")}
    stage = StudentStageConfig(cpus_per_trial=cfg.cpus_per_trial, seed=cfg.seed, transfer=specs, student=shared,
                               space=StudentSpace(**offered, lexical_buckets=(0,)))
    real, broad = (cfg.transfer_texts or default_transfer_texts(cfg.data_dir),
                   cfg.broad_texts or default_broad_texts(cfg.data_dir))
    pools = Pools(real=real and str(real), broad=broad and str(broad))
    prepare_teacher_outputs(stage, splits, experiment, 2, pools)
    student_data = make_data(splits, experiment, stage)
    start_benchmark_slot()
    keys = sorted({k for r in rows.values() for k in r})
    defaults = asdict(StudentConfig())
    space = {"row": tune.grid_search(list(rows)),
             **{k: tune.sample_from(lambda spec, k=k: rows[spec.config["row"]].get(k, defaults[k])) for k in keys}}
    trainable = tune.with_resources(tune.with_parameters(train_student, data=student_data, base=stage.base_student()),
                                    {"cpu": cfg.cpus_per_trial})
    results = tune.Tuner(trainable, param_space=space, run_config=tune.RunConfig(
        name=f"{cfg.tag}_trials", storage_path=str(experiment), verbose=1,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1))).fit()
    return _write(cfg, experiment, results, splits, extra, rows, shared, t0)


def _write(cfg: AblationConfig, experiment: Path, results, splits, extra, rows, shared, t0: float) -> dict:
    import numpy as np
    import pandas as pd

    from modeling.metrics import paired_bootstrap
    from inference.atomic import write_json
    from search.experiment import Experiment
    from search.student_stage import collect_trials, evaluate_on_test, write_csv_atomic

    layout = Experiment(experiment)
    df = collect_trials(results, experiment, shared, models=f"{cfg.tag}_students")
    names = {(r.metrics or {}).get("trial_id") or Path(r.path).name: r.config.get("row") for r in results}
    df["row"] = df.trial_id.map(names)
    df["overrides"] = df.row.map(lambda n: ",".join(f"{k}={v}" for k, v in rows.get(n, {}).items()))
    df = evaluate_on_test(df, splits, experiment, extra)
    df["row"] = df["row"].astype("category").cat.set_categories(list(rows), ordered=True)
    df = df.sort_values("row").reset_index(drop=True)
    first = df.iloc[0]
    for name in (("test",) if splits.has_test else ()) + tuple(extra):
        y = (splits.test if name == "test" else extra[name]).label.to_numpy()
        ref = layout.prediction(first.trial_id, name)
        diffs = [paired_bootstrap(y, np.load(layout.prediction(t, name)), np.load(ref))
                 if layout.prediction(t, name).is_file() else {} for t in df.trial_id]
        df[f"{name}_delta_wf1"] = [d.get("diff") for d in diffs]
        df[f"{name}_delta_low"] = [d.get("low") for d in diffs]
        df[f"{name}_delta_high"] = [d.get("high") for d in diffs]
    df["delta_int8_val_weighted_f1"] = pd.to_numeric(df.int8_val_weighted_f1) - pd.to_numeric(first.int8_val_weighted_f1)
    write_csv_atomic(df, layout.table(cfg.tag))
    parts = lexical_parts(df, experiment, splits, extra)
    if parts is not None:
        write_csv_atomic(parts, layout.table(f"{cfg.tag}_parts"))
    out = {"study": "ablation", "config": asdict(cfg), "rows_resolved": rows,
           "parts": None if parts is None else parts.to_dict(orient="records"),
           "wall_time_s": round(time.time() - t0, 1), "rows": df.to_dict(orient="records")}
    write_json(layout.study_record(cfg.tag), out)
    return out


def lexical_parts(df, experiment: Path, splits, extra: dict):
    """With the gold expert, one trained student gives two rows: the student alone and the student
    fused with the expert (the expert is fitted apart and changes no training step, so the pair is the
    same student with and without it). Every (row, part) gets test / out-of-domain weighted F1 with a
    bootstrap interval and the paired difference to the first row's student alone (and, for a folder whose expert
    weight follows the text, the paired difference of the gate: gated minus one weight); None when no row has an
    expert."""
    import numpy as np
    import pandas as pd

    from modeling import classification_metrics
    from modeling.metrics import bootstrap_interval, paired_bootstrap
    from search.experiment import Experiment

    if "expert_buckets" not in df or not (pd.to_numeric(df.expert_buckets).fillna(0) > 0).any():
        return None
    layout = Experiment(experiment)
    entries = []
    for _, r in df.iterrows():
        has = layout.prediction(r.trial_id, "test_student").is_file() if splits.has_test else False
        entries.append((f"{r.row}", "student alone", r.trial_id, "_student" if has else ""))
        if has and layout.prediction(r.trial_id, "test_fixed").is_file():
            entries.append((f"{r.row}", "fused, one weight for every text", r.trial_id, "_fixed"))
        if has:
            entries.append((f"{r.row}", "fused with the gold expert", r.trial_id, ""))
    out = []
    for row, part, trial, suffix in entries:
        rec = {"row": row, "part": part, "trial_id": trial}
        for name in (("test",) if splits.has_test else ()) + tuple(extra):
            y = (splits.test if name == "test" else extra[name]).label.to_numpy()
            f = layout.prediction(trial, f"{name}{suffix}")
            if not f.is_file():
                continue
            pred = np.load(f)
            ref_row, _, ref_trial, ref_suffix = entries[0]
            ref = np.load(layout.prediction(ref_trial, f"{name}{ref_suffix}"))
            rec[f"{name}_weighted_f1"] = classification_metrics(y, pred)["weighted_f1"]
            rec[f"{name}_wf1_low"], rec[f"{name}_wf1_high"] = bootstrap_interval(y, pred)
            d = paired_bootstrap(y, pred, ref)
            rec.update({f"{name}_delta_wf1": d["diff"], f"{name}_delta_low": d["low"], f"{name}_delta_high": d["high"]})
            fixed = layout.prediction(trial, f"{name}_fixed")
            if suffix == "" and fixed.is_file():  # the gate's own effect: the same folder at one weight, paired
                g = paired_bootstrap(y, pred, np.load(fixed))
                rec.update({f"{name}_gate_delta_wf1": g["diff"], f"{name}_gate_delta_low": g["low"],
                            f"{name}_gate_delta_high": g["high"]})
        out.append(rec)
    return pd.DataFrame(out)


def main(argv=None) -> int:
    cfg = parse_args(argv)
    return run_cli(lambda: print_rows(run_ablation(cfg)), (FileNotFoundError, ValueError), log)


def print_rows(out: dict) -> None:
    import pandas as pd

    cols = ["row", "int8_val_weighted_f1", "test_weighted_f1", "test_wf1_low", "test_wf1_high", "test_delta_wf1",
            "ood_weighted_f1", "ood_delta_wf1", "fidelity_agreement", "fidelity_kl", "gate_slope", "e2e_ms_p50",
            "size_mib", "time_total_s"]
    df = pd.DataFrame(out["rows"])
    print(df[[c for c in cols if c in df]].to_string(index=False, float_format=lambda x: f"{x:.4f}"))


if __name__ == "__main__":
    sys.exit(main())
