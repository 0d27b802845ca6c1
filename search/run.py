"""Entry point: ``python search/run.py [options]``.

Stages: data -> teacher (fine-tuned with Ray Tune, cached in the experiment directory) ->
transfer sets (teacher-labelled augmented posts, cached) -> student search (Optuna + ASHA; every
trial: KD -> int8 PTQ -> CPU benchmark) -> Pareto front. Run ``python search/run.py --help`` for the options.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # run as a script from a checkout: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.atomic import write_json  # noqa: E402  (after the path set-up above)
from search.cli import run_cli  # noqa: E402
from search.config import RunConfig, parse_run_config  # noqa: E402

if TYPE_CHECKING:  # the stages import torch and Ray: loaded when a run needs them, not for --help
    from corpus import Splits
    from corpus.transfer_text import Pools
    from search.student_stage import StudentStageConfig
    from search.teacher_stage import TeacherStageConfig

log = logging.getLogger("search")
DEFAULT_TRANSFER = ("real:40000",)
# the default search: the recipe measured best so far (docs/results.md), so that `python search/run.py --trials 40`
# is the run whose results the README shows; trials Optuna runs first (spaces.student.parse_point)
DEFAULT_ENQUEUE = (
    "layers=4,hidden=256,ffn_ratio=2,vocab=8000,kd_alpha=0.7,kd_temperature=2,lr=0.0003,epochs=3,transfer=real,"
    "lexical_buckets=65536,expert_buckets=131072",
    "layers=3,hidden=192,ffn_ratio=2,vocab=8000,kd_alpha=0.7,kd_temperature=2,lr=0.0005,epochs=3,transfer=real,"
    "lexical_buckets=0,expert_buckets=131072",
    "layers=2,hidden=256,ffn_ratio=2,vocab=8000,kd_alpha=0.7,kd_temperature=2,lr=0.0005,epochs=3,transfer=real,"
    "lexical_buckets=0,expert_buckets=131072",
)


def parse_args(argv: list[str] | None = None) -> RunConfig:
    return parse_run_config(argv, description=__doc__)


@dataclass
class RunPlan:
    """What a run will do, settled by ``plan`` before any work starts."""
    cfg: RunConfig
    experiment: Path
    splits: Splits
    pools: Pools             # unlabelled text the transfer sets sample and the fidelity slice is held out of
    teacher: TeacherStageConfig  # gpus_per_trial is filled in once Ray runs (``run``)
    students: StudentStageConfig
    checks_s: float = 0.0


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    from corpus import DataError
    from teachers import TeacherError

    return run_cli(lambda: report(*run(plan(cfg))),
                   (DataError, TeacherError, FileNotFoundError, ValueError, ConnectionError), log)


def report(teacher: dict, search: dict | None, experiment: Path) -> None:
    """What the run prints at its end: the teacher's figures, the Pareto front, where the experiment is."""
    shown = "test" if "test" in teacher else "val"  # own data without a test file: validation only
    print(f"teacher: {shown} weighted F1 {teacher[shown]['weighted_f1']:.4f} "
          f"(accuracy {teacher[shown]['accuracy']:.4f}, macro F1 {teacher[shown]['macro_f1']:.4f})")
    if search:
        print_front(search, experiment)
    print(f"experiment: {experiment}")


def plan(cfg: RunConfig) -> RunPlan:
    """Everything that can be checked, checked before any work starts: the storage, the data, the transfer
    text, the space and its enqueued points, the teacher."""
    from search.experiment import Experiment

    t0 = time.time()
    e = cfg.experiment
    experiment = Experiment.open(Path(e.storage).expanduser().resolve() / e.name, e.resume, e.min_free_gib)
    splits = plan_data(cfg)
    transfer, pools = plan_transfer(cfg, len(splits.train))
    students = plan_students(cfg, transfer)
    teacher = plan_teacher(cfg, experiment.root, students, splits)
    return RunPlan(cfg, experiment.root, splits, pools, teacher, students, checks_s=round(time.time() - t0, 1))


def data_record(cfg: RunConfig, splits: Splits) -> dict:
    """data.json: the splits as this run reads them (what the cached teacher outputs were computed on)."""
    return {**splits.describe(), "max_train_samples": cfg.data.max_train_samples}


def plan_data(cfg: RunConfig) -> Splits:
    """The labelled posts, read and checked: RuSentiment, or the user's own files (``--train``)."""
    from corpus import load_splits, load_table_splits

    d, seed = cfg.data, cfg.experiment.seed
    if d.train:
        return load_table_splits(d.train, d.val, d.test, d.text_column, d.label_column, seed=seed,
                                 max_train_samples=d.max_train_samples)
    return load_splits(d.data_dir, seed=seed, max_train_samples=d.max_train_samples, val_from=d.val_from)


def plan_students(cfg: RunConfig, transfer: tuple) -> StudentStageConfig:
    """The student search's config; its enqueued points checked against the space it searches."""
    from search.student_stage import StudentStageConfig
    from spaces.student import StudentConfig, parse_point

    s = cfg.search
    students = StudentStageConfig(
        trials=s.trials, cpus_per_trial=cfg.cluster.cpus_per_trial or 1, seed=cfg.experiment.seed,
        time_budget_s=s.time_budget_s, resume=cfg.experiment.resume, grace_rounds=s.grace_rounds,
        asha_bands=s.asha_bands, space=cfg.space,
        transfer=transfer, expert_model=s.expert_model,
        student=StudentConfig(transfer_ratio=cfg.transfer.ratio, max_size_mib=s.max_size_mib, bench_texts=s.bench_texts),
        enqueue=tuple(parse_point(t) for t in s.enqueue or ()))
    space = students.search_space()
    if s.enqueue is None:  # the default points, cut to the space this run searches (own data, other flags)
        students = replace(students, enqueue=tuple(space.restrict(parse_point(t)) for t in DEFAULT_ENQUEUE))
    for point in students.enqueue:
        space.check_point(point)
    return students


def plan_teacher(cfg: RunConfig, experiment: Path, students: StudentStageConfig, splits: Splits) -> TeacherStageConfig:
    """The teacher stage's config. A bad ``--teacher`` fails here, before Ray starts; the teacher's shape is what
    "pruned" students are cut from, so a space the teacher cannot be cut to fails here too (when this run
    searches students)."""
    from corpus.cache import cache_root
    from search.student_stage import teacher_shape
    from search.teacher_stage import TeacherStageConfig, load_cached_teacher
    from teachers import encoder_shape, resolve_teacher

    t = cfg.teacher
    cached = load_cached_teacher(experiment, t.model, data_record(cfg, splits)) is not None
    source = None if cached else resolve_teacher(t.model, cache_root() / "teachers")
    if cfg.experiment.stage == "all":
        shape = teacher_shape(experiment) if cached else encoder_shape(source.location)
        replace(students, teacher_shape=shape).search_space()
    return TeacherStageConfig(teacher=t.model, trials=t.trials, epochs=t.epochs, lr=t.lr,
                              cpus_per_trial=cfg.cluster.cpus_per_trial or min(2, os.cpu_count() or 1),
                              seed=cfg.experiment.seed if t.seed is None else t.seed)


def plan_transfer(cfg: RunConfig, n_train: int) -> tuple[tuple, Pools]:
    """The transfer sets to build (``--transfer``, or real text when there is some) and the unlabelled text files
    they sample; without any, one warning says what is missing and what it costs."""
    from corpus import DataError
    from corpus.augment import REAL
    from corpus.transfer_text import (LICENSED_BROAD_SOURCES, Pools, default_broad_texts, default_transfer_texts,
                                      read_transfer_texts)
    from search.transfer_stage import parse_transfer

    t = cfg.transfer
    # own data (--train) never borrows the RuSentiment pool beside the default data dir: another domain
    texts_file = t.texts or (None if cfg.data.train else default_transfer_texts(cfg.data.data_dir))
    broad_file = t.broad_texts or (None if cfg.data.train else default_broad_texts(cfg.data.data_dir))
    sources = LICENSED_BROAD_SOURCES if tuple(t.broad_sources) == ("licensed",) else tuple(t.broad_sources)
    pools = Pools(real=texts_file and str(texts_file), broad=broad_file and str(broad_file), broad_sources=sources)
    asked = t.sets
    if asked is None:  # the default: real text when there is some
        asked = tuple(d for d in DEFAULT_TRANSFER if pools.file(d.partition(":")[0]))
        if not asked:
            where = "" if cfg.data.train else (", no transfer/transfer_texts.csv beside the data dir, and no pool "
                                               "fetched by `python -m corpus.transfer_text fetch`")
            log.warning(f"no transfer text (no --transfer-texts{where}): the students learn from the labelled "
                        "posts only, which costs accuracy (the 'no transfer text' row of docs/results.md); give "
                        "unlabelled text of the same domain with --transfer-texts FILE.csv, or general Russian text: "
                        "--transfer-texts .../transfer/transfer_texts.csv --broad-texts .../transfer-broad/"
                        "broad_texts.csv --transfer real:5000 broad:5000 (on a tweets task: +.008 [-.006, +.019] "
                        "test wF1, fidelity +.016; docs/results.md, issue 35)")
    transfer = tuple(parse_transfer(x, cfg.experiment.seed, n_train) for x in asked)
    for recipe in sorted({x.recipe for x in transfer} & set(REAL)):
        if pools.file(recipe) is None:
            flag = "--transfer-texts" if recipe == "real" else "--broad-texts"
            raise DataError(f"--transfer {recipe}:SIZE needs unlabelled text: pass {flag} FILE (a CSV with a "
                            "'text' column)")
        read_transfer_texts(pools.file(recipe))  # a missing or malformed file fails before the teacher trains
    return transfer, pools


def run(p: RunPlan) -> tuple[dict, dict | None, Path]:
    """The stages of a plan, each timed into ``run.json``: (teacher figures, search summary or None, experiment)."""
    from corpus.cache import cache_root
    from search.experiment import Experiment
    from search.provenance import provenance
    from search.student_stage import prepare_teacher_outputs, run_student_stage
    from search.teacher_stage import run_teacher_stage

    t0, prov = time.time(), provenance()  # the code as it was when the run started
    stage_s = {"checks_and_data": p.checks_s}  # wall time of each stage, into run.json

    def timed(name, fn, *args, **kwargs):
        t = time.time()
        out = fn(*args, **kwargs)
        stage_s[name] = round(stage_s.get(name, 0.0) + time.time() - t, 1)
        log.info("stage %s: %.0f s", name, time.time() - t)
        return out

    layout = Experiment(p.experiment)
    write_json(layout.data, data_record(p.cfg, p.splits))
    timed("ray_start", start_ray, p.cfg.cluster.address)
    teacher_cfg = replace(p.teacher, gpus_per_trial=gpus_per_trial(p.cfg.cluster.gpus_per_trial))
    teacher = timed("teacher", run_teacher_stage, teacher_cfg, p.splits, p.experiment, cache_root())
    search = None
    if p.cfg.experiment.stage in ("prepare", "all"):
        prepare_teacher_outputs(p.students, p.splits, p.experiment, teacher_cfg.cpus_per_trial, p.pools, timed)
    if p.cfg.experiment.stage == "all":
        search = timed("student_search", run_student_stage, p.students, p.splits, p.experiment)
    write_json(layout.run, {
        "provenance": prov, "wall_time_s": round(time.time() - t0 + p.checks_s, 1), "stage_wall_time_s": stage_s,
        "gpus_per_teacher_trial": teacher_cfg.gpus_per_trial, "teacher_test": teacher.get("test"),
        "teacher_val": teacher["val"]})
    return teacher, search, p.experiment


def _probe(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at HOST:PORT (Ray itself retries at length)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise ConnectionError(f"--address {address}: cannot connect to a Ray cluster there ({e}); start one with "
                              f"`ray start --head` or leave --address out to run on this machine") from None


def start_ray(address: str | None) -> None:
    """Connect to ``--address`` (a running cluster) or start Ray on this machine."""
    import ray

    if ray.is_initialized():
        return
    if address and address not in ("auto", "local"):
        _probe(address)
    try:
        # "local": a fresh Ray on this machine even if another cluster runs here (Ray's own default
        # would join the latest cluster started on the machine)
        ray.init(address=address or "local", include_dashboard=False, configure_logging=False)
    except ConnectionError as e:
        raise ConnectionError(f"--address {address}: cannot connect to a Ray cluster there ({e}); start one with "
                              f"`ray start --head` or leave --address out to run on this machine") from None


def gpus_per_trial(asked: float | None) -> float:
    """``--gpus-per-trial``, or by default one GPU per teacher trial when the cluster has one."""
    import ray

    have = ray.cluster_resources().get("GPU", 0)
    if asked is None:
        asked = 1.0 if have >= 1 else 0.0
    if asked > have:
        raise ValueError(f"--gpus-per-trial {asked}: the Ray cluster has {have:g} GPU(s); use at most {have:g}")
    log.info("teacher trials: %g GPU each (%g in the cluster)%s", asked, have, "" if asked else "; on CPU")
    return asked


def print_front(search: dict, experiment: Path) -> None:
    import pandas as pd

    from search.experiment import Experiment

    front = pd.DataFrame(search["front"])
    from trainables.metrics import FRONT_SHOWN

    cols = [c for c in ("trial_id", "layers", "hidden", "heads", "ffn", "vocab", *FRONT_SHOWN) if c in front]
    print(f"student search: {search['trials']} trials {search['status_counts']} in {search['wall_time_s']:.0f} s")
    print("Pareto front (int8 validation weighted F1 vs median end-to-end latency vs size; trivial trials left out):")
    print(front[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    layout = Experiment(experiment)
    print(f"trials table: {layout.table()}; front: {layout.front}")


if __name__ == "__main__":
    sys.exit(main())
