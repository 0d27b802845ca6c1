"""Entry point: ``python search/run.py [options]``.

Stages: data -> teacher (fine-tuned with Ray Tune, cached in the experiment directory) ->
student search (next). Run ``python search/run.py --help`` for the options.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("search")
TEACHERS_HELP = "e5-small (offline, default), a Hugging Face hub id such as cointegrated/rubert-tiny2, or a local model directory"


@dataclass
class RunConfig:
    teacher: str
    data_dir: str | None
    storage: str
    name: str
    seed: int
    max_train_samples: int | None
    teacher_trials: int
    teacher_epochs: int
    teacher_lr: float
    cpus_per_trial: int
    address: str | None
    stage: str


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> RunConfig:
    p = argparse.ArgumentParser(prog="search/run.py", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--teacher", default="e5-small", help=TEACHERS_HELP)
    p.add_argument("--data-dir", default=None,
                   help="folder with the RuSentiment CSVs (else $RUSENTIMENT_DATA_DIR, else download)")
    p.add_argument("--storage", default="experiments", help="where experiments are stored (path)")
    p.add_argument("--name", default="rusentiment", help="experiment name (a folder under --storage)")
    p.add_argument("--seed", type=int, default=13, help="seed of the validation split, training and sampling")
    p.add_argument("--max-train-samples", type=positive_int, default=None,
                   help="stratified subset of the training posts (quick runs)")
    p.add_argument("--teacher-trials", type=positive_int, default=1,
                   help="teacher learning rates to try (a small Ray Tune grid)")
    p.add_argument("--teacher-epochs", type=positive_int, default=3)
    p.add_argument("--teacher-lr", type=float, default=8e-5)
    p.add_argument("--cpus-per-trial", type=positive_int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--address", default=None, help="Ray cluster address (auto or ray://HOST:PORT); default: local")
    p.add_argument("--stage", choices=("teacher", "all"), default="all",
                   help="stop after the teacher stage, or run everything available")
    a = p.parse_args(argv)
    return RunConfig(teacher=a.teacher, data_dir=a.data_dir, storage=a.storage, name=a.name, seed=a.seed,
                     max_train_samples=a.max_train_samples, teacher_trials=a.teacher_trials,
                     teacher_epochs=a.teacher_epochs, teacher_lr=a.teacher_lr,
                     cpus_per_trial=a.cpus_per_trial, address=a.address, stage=a.stage)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = parse_args(argv)
    import ray

    from corpus import DataError, load_splits
    from corpus.rusentiment import cache_root
    from search.provenance import provenance
    from search.teacher_stage import TeacherStageConfig, run_teacher_stage
    from teachers import TeacherError

    experiment = Path(cfg.storage).expanduser().resolve() / cfg.name
    experiment.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        splits = load_splits(cfg.data_dir, seed=cfg.seed, max_train_samples=cfg.max_train_samples)
        (experiment / "data.json").write_text(json.dumps(splits.describe(), indent=2))
        if not ray.is_initialized():
            ray.init(address=cfg.address, include_dashboard=False, configure_logging=False)
        teacher = run_teacher_stage(
            TeacherStageConfig(teacher=cfg.teacher, trials=cfg.teacher_trials, epochs=cfg.teacher_epochs,
                               lr=cfg.teacher_lr, cpus_per_trial=cfg.cpus_per_trial, seed=cfg.seed),
            splits, experiment, cache_root())
    except (DataError, TeacherError) as e:
        log.error("%s", e)
        return 2
    run_info = {"provenance": provenance(), "wall_time_s": round(time.time() - t0, 1),
                "teacher_test": teacher["test"], "teacher_val": teacher["val"]}
    (experiment / "run.json").write_text(json.dumps(run_info, indent=2, default=str))
    print(f"teacher: test weighted F1 {teacher['test']['weighted_f1']:.4f} "
          f"(accuracy {teacher['test']['accuracy']:.4f}, macro F1 {teacher['test']['macro_f1']:.4f}); "
          f"experiment in {experiment}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
