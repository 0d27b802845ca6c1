"""What each distillation lever adds, on one fixed student: ``python -m search.ablation``.

Runs the student trainable (the same KD -> int8 PTQ -> benchmark path as the search) once per lever
setting, with everything else fixed, through a Ray Tune grid; writes ``ablation.csv`` and
``ablation.json`` in the experiment directory. The transfer sets must have been built by
``search/run.py`` (they are reused, not recomputed). Test figures are for the report only.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("search.ablation")
DEFAULT_LEVERS = ("none:0", "tang:0", "join:0", "span:0", "tang+join+span:0", "none:1", "tang+join+span:1", "none:0:1")


@dataclass
class AblationConfig:
    experiment: str
    data_dir: str | None = None
    levers: tuple[str, ...] = DEFAULT_LEVERS   # TRANSFER:FEATURE_KD[:HIDDEN_KD]
    transfer: tuple[str, ...] = ("tang:25000", "join:25000", "span:25000")
    layers: int = 2
    hidden: int = 128
    heads: int = 2
    ffn: int = 256
    vocab: int = 8000
    epochs: int = 3
    lr: float = 1e-3
    kd_alpha: float = 0.7
    kd_temperature: float = 2.0
    cpus_per_trial: int = 1
    seed: int = 13
    tag: str = "ablation"      # names the outputs: <tag>.csv, <tag>.json, <tag>_trials/, <tag>_students/
    collect_only: bool = False  # write the tables from an interrupted run's <tag>_trials/ (no training)


def parse_args(argv=None) -> AblationConfig:
    p = argparse.ArgumentParser(prog="python -m search.ablation", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = AblationConfig(experiment="")
    p.add_argument("--experiment", required=True, help="experiment directory written by search/run.py")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--levers", nargs="+", default=list(d.levers), help="TRANSFER:FEATURE_KD[:HIDDEN_KD] settings to compare")
    p.add_argument("--transfer", nargs="+", default=list(d.transfer), help="transfer sets (as in search/run.py)")
    for name in ("layers", "hidden", "heads", "ffn", "vocab", "epochs", "cpus_per_trial", "seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    for name in ("lr", "kd_alpha", "kd_temperature"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    p.add_argument("--tag", default=d.tag, help="output name prefix inside the experiment directory")
    p.add_argument("--collect-only", action="store_true",
                   help="only write the tables from the trials already in <tag>_trials (an interrupted run)")
    a = vars(p.parse_args(argv))
    a["levers"], a["transfer"] = tuple(a["levers"]), tuple(a["transfer"])
    return AblationConfig(**a)


def parse_lever(text: str) -> tuple[str, float, float]:
    """``TRANSFER:FEATURE_KD[:HIDDEN_KD]`` -> (transfer, feature KD weight, hidden KD weight)."""
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        return parts[0], float(parts[1]), float(parts[2]) if len(parts) == 3 else 0.0
    except ValueError:
        raise ValueError(f"--levers {text!r}: expected TRANSFER:FEATURE_KD[:HIDDEN_KD] such as none:0, tang:1 or "
                         f"none:0:1") from None


def run_ablation(cfg: AblationConfig) -> dict:
    import ray
    from ray import tune

    from corpus import load_splits
    from corpus.rusentiment import cache_root
    from search.student_stage import StudentStageConfig, make_data
    from search.transfer_stage import ensure_train_layers, parse_transfer, run_transfer_stage
    from trainables.bench_slot import start_benchmark_slot
    from trainables.student import train_student

    experiment = Path(cfg.experiment).resolve()
    splits = load_splits(cfg.data_dir, seed=cfg.seed)
    specs = tuple(parse_transfer(t, cfg.seed, len(splits.train)) for t in cfg.transfer)
    levers = [parse_lever(x) for x in cfg.levers]
    t0 = time.time()
    if cfg.collect_only:
        from ray.tune import ExperimentAnalysis, ResultGrid

        path = experiment / f"{cfg.tag}_trials"
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no ablation trials to collect; run without --collect-only")
        results = [r for r in ResultGrid(ExperimentAnalysis(str(path))) if (r.metrics or {}).get("round")]
        return _write(cfg, experiment, results, splits, t0)
    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, configure_logging=False)
    run_transfer_stage(list(specs), splits, experiment, cache_root(), 2, features=any(lv[1] > 0 for lv in levers))
    if any(lv[2] > 0 for lv in levers):
        ensure_train_layers(splits, experiment, cache_root(), 2)
    stage = StudentStageConfig(cpus_per_trial=cfg.cpus_per_trial, seed=cfg.seed, transfer=specs, evals_per_epoch=1,
                               hidden_kd=tuple({lv[2] for lv in levers}))
    data = make_data(splits, experiment, stage)
    start_benchmark_slot()
    fixed = {k: getattr(cfg, k) for k in ("layers", "hidden", "heads", "ffn", "vocab", "epochs", "lr", "kd_alpha",
                                          "kd_temperature")}
    space = {**fixed, "init": "teacher", "lever": tune.grid_search(levers),
             "transfer": tune.sample_from(lambda spec: spec.config["lever"][0]),
             "feature_kd": tune.sample_from(lambda spec: spec.config["lever"][1]),
             "hidden_kd": tune.sample_from(lambda spec: spec.config["lever"][2])}
    trainable = tune.with_resources(tune.with_parameters(train_student, data=data), {"cpu": cfg.cpus_per_trial})
    results = tune.Tuner(trainable, param_space=space, run_config=tune.RunConfig(
        name=f"{cfg.tag}_trials", storage_path=str(experiment), verbose=1,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1))).fit()
    return _write(cfg, experiment, results, splits, t0)


def _write(cfg: AblationConfig, experiment: Path, results, splits, t0: float) -> dict:
    from search.student_stage import collect_trials, evaluate_on_test, write_csv_atomic

    df = collect_trials(results, experiment, models=f"{cfg.tag}_students")
    df = evaluate_on_test(df, splits, experiment)
    base = df[(df.transfer == "none") & (df.feature_kd == 0) & (df.hidden_kd.fillna(0) == 0)]
    if len(base):
        df["delta_int8_val_weighted_f1"] = df.int8_val_weighted_f1 - float(base.int8_val_weighted_f1.iloc[0])
    write_csv_atomic(df, experiment / f"{cfg.tag}.csv")
    out = {"config": asdict(cfg), "wall_time_s": round(time.time() - t0, 1), "rows": df.to_dict(orient="records")}
    (experiment / f"{cfg.tag}.json").write_text(json.dumps(out, indent=2, default=str))
    return out


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = parse_args(argv)
    try:
        out = run_ablation(cfg)
    except (FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 2
    import pandas as pd

    cols = ["transfer", "feature_kd", "hidden_kd", "int8_val_weighted_f1", "delta_int8_val_weighted_f1", "test_weighted_f1",
            "round_train_s", "time_total_s"]
    df = pd.DataFrame(out["rows"])
    print(df[[c for c in cols if c in df]].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
