"""Entry point: ``python search/run.py [options]``.

Stages: data -> teacher (fine-tuned with Ray Tune, cached in the experiment directory) ->
transfer sets (teacher-labelled augmented posts, cached) -> student search (Optuna + ASHA; every
trial: KD -> int8 PTQ -> CPU benchmark) -> Pareto front. Run ``python search/run.py --help`` for the options.
"""
from __future__ import annotations

import argparse
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
from spaces.student import DIMENSIONS, StudentSpace  # noqa: E402

if TYPE_CHECKING:  # the stages import torch and Ray: loaded when a run needs them, not for --help
    from corpus import Splits
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
TEACHERS_HELP = "e5-small (offline, default), a Hugging Face hub id such as cointegrated/rubert-tiny2, or a local model directory"


@dataclass
class RunConfig:
    teacher: str
    data_dir: str | None
    train: str | None          # own data (see corpus/tables.py); None: RuSentiment from data_dir
    val: str | None
    test: str | None
    text_column: str
    label_column: str
    storage: str
    name: str
    seed: int
    max_train_samples: int | None
    val_from: str
    teacher_trials: int
    teacher_epochs: int
    teacher_lr: float
    teacher_seed: int | None
    cpus_per_trial: int | None  # None: every core (up to 2) for a teacher trial, 1 per student trial
    address: str | None
    stage: str
    trials: int
    resume: bool
    time_budget_s: float | None
    grace_rounds: int
    transfer: tuple[str, ...] | None  # None: the default (real text when there is some)
    space: StudentSpace  # the dimensions' choices and ranges (spaces/student.py:DIMENSIONS)
    expert_model: str
    transfer_texts: str | None
    transfer_ratio: float
    max_size_mb: float | None
    enqueue: tuple[str, ...] | None  # None: DEFAULT_ENQUEUE, each point cut to what the space offers
    gpus_per_trial: float | None  # None: one GPU per teacher trial when the cluster has one, else none
    min_free_gb: float


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
    p.add_argument("--dataset", choices=("rusentiment",), default="rusentiment",
                   help="the benchmark dataset, used unless --train gives your own data")
    p.add_argument("--train", default=None, metavar="FILE|DIR|NAME",
                   help="your own labelled texts: CSV, TSV, JSON Lines or Parquet, a datasets save_to_disk folder, or "
                        "a Hugging Face dataset name; any label set (2+ classes)")
    p.add_argument("--val", default=None, help="validation data (same forms; default: a stratified 10%% of --train)")
    p.add_argument("--test", default=None, help="test data (same forms; default: none, figures are validation-only)")
    p.add_argument("--text-column", default="text", help="column holding the texts in --train/--val/--test")
    p.add_argument("--label-column", default="label", help="column holding the labels in --train/--val/--test")
    p.add_argument("--storage", default="experiments", help="where experiments are stored (path)")
    p.add_argument("--name", default="rusentiment", help="experiment name (a folder under --storage)")
    p.add_argument("--seed", type=int, default=13, help="seed of the validation split, training and sampling")
    p.add_argument("--max-train-samples", type=positive_int, default=None,
                   help="stratified subset of the training posts (quick runs)")
    p.add_argument("--val-from", choices=("random", "all"), default="random",
                   help="carve validation from the random posts only (like the test file) or from random + "
                        "preselected (the older split)")
    p.add_argument("--teacher-trials", type=positive_int, default=1,
                   help="teacher learning rates to try (a small Ray Tune grid)")
    p.add_argument("--teacher-epochs", type=positive_int, default=3)
    p.add_argument("--teacher-lr", type=float, default=8e-5)
    p.add_argument("--teacher-seed", type=int, default=None,
                   help="seed of the teacher's training only (initialisation, dropout, batch order); default --seed")
    p.add_argument("--cpus-per-trial", type=positive_int, default=None,
                   help="CPUs per trial; default: up to 2 for the teacher, 1 per student trial (two students train "
                        "side by side on 2 cores)")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per teacher trial (fine-tuning, then teacher outputs and transfer labelling on the GPU "
                        "with bf16); default: 1 when the Ray cluster has a GPU, else 0. Students train and every "
                        "latency is measured on CPU")
    p.add_argument("--min-free-gb", type=float, default=3.0,
                   help="refuse to start when --storage has less free space than this (GiB)")
    p.add_argument("--address", default=None, help="Ray cluster address (auto or ray://HOST:PORT); default: local")
    p.add_argument("--stage", choices=("teacher", "prepare", "all"), default="all",
                   help="stop after the teacher stage; after the teacher, its transfer sets and activation statistics "
                        "(prepare: everything the search reads, e.g. on a GPU machine); or run the student search too")
    p.add_argument("--trials", type=positive_int, default=40, help="student trials (Optuna samples)")
    p.add_argument("--resume", action="store_true", help="continue the student search stored in --storage/--name")
    p.add_argument("--time-budget-s", type=float, default=None, help="stop starting/continuing trials after this")
    p.add_argument("--grace-rounds", type=positive_int, default=2,
                   help="ASHA's grace period in rounds (quarter epochs): no trial stops before it; rungs at G, 3G, 9G")
    p.add_argument("--transfer", nargs="*", default=None, metavar="RECIPE:SIZE|RECIPE:xK",
                   help="teacher-labelled transfer sets the space may add to the labelled posts: real (a sample "
                        "of --transfer-texts) or generated from the training posts (tang, span, join; see "
                        "corpus/augment.py); SIZE posts or K times the training posts; none: --transfer with no value; "
                        "default: real:40000 when the transfer text file exists, else none")
    p.add_argument("--expert-model", choices=("svm", "logreg"), default="svm",
                   help="the gold expert's linear model (calibrated on cross-fitted scores either way)")
    p.add_argument("--transfer-texts", default=None,
                   help="unlabelled text (CSV with a 'text' column) for --transfer real:SIZE; default "
                        "<data-dir>/../transfer/transfer_texts.csv when it exists")
    p.add_argument("--transfer-ratio", type=float, default=0.5,
                   help="transfer posts drawn per epoch, as a multiple of the labelled posts (all labelled posts "
                        "are seen every epoch)")
    p.add_argument("--max-size-mb", type=float, default=5.0,
                   help="size limit (MiB) of a shipped student: the vocabulary shrinks until the estimate fits")
    p.add_argument("--enqueue", nargs="*", default=None, metavar="NAME=VALUE,...",
                   help="trials Optuna runs first, over the space's parameters (layers, hidden, init, ffn_ratio, "
                        "vocab, kd_alpha, kd_temperature, lr, epochs, transfer, lexical_buckets, ...), e.g. a "
                        "student an ablation found good; default: the shipped recipe and two smaller ones with the "
                        "gold expert (settings outside the space dropped); none: --enqueue with no value")
    add_space_options(p)
    a = p.parse_args(argv)
    if (a.val or a.test) and not a.train:
        p.error("--val and --test go with --train (your own data); RuSentiment's splits come from --data-dir")
    try:
        space = space_from_args(a)
    except ValueError as e:
        p.error(str(e))
    return RunConfig(teacher=a.teacher, data_dir=a.data_dir, train=a.train, val=a.val, test=a.test,
                     text_column=a.text_column, label_column=a.label_column, storage=a.storage, name=a.name, seed=a.seed,
                     max_train_samples=a.max_train_samples, val_from=a.val_from, teacher_trials=a.teacher_trials,
                     teacher_epochs=a.teacher_epochs, teacher_lr=a.teacher_lr, teacher_seed=a.teacher_seed,
                     cpus_per_trial=a.cpus_per_trial, address=a.address, stage=a.stage, trials=a.trials,
                     resume=a.resume, time_budget_s=a.time_budget_s, grace_rounds=a.grace_rounds,
                     transfer=None if a.transfer is None else tuple(a.transfer), space=space,
                     expert_model=a.expert_model, transfer_texts=a.transfer_texts,
                     transfer_ratio=a.transfer_ratio, max_size_mb=a.max_size_mb,
                     enqueue=None if a.enqueue is None else tuple(a.enqueue), gpus_per_trial=a.gpus_per_trial,
                     min_free_gb=a.min_free_gb)


def add_space_options(p: argparse.ArgumentParser) -> None:
    """One option per row of ``spaces.student.DIMENSIONS``: ``--NAME V ...`` (the choices the space offers) or
    ``--min-NAME``/``--max-NAME`` (a range's bounds)."""
    g = p.add_argument_group("the student search space (spaces/student.py:DIMENSIONS; the defaults are the best "
                             "measured recipe)")
    for dim in DIMENSIONS:
        if not dim.option:
            continue
        if dim.range:
            for end, value in zip(("min", "max"), dim.default):
                g.add_argument(f"--{end}-{dim.flag[2:]}", type=dim.kind, default=argparse.SUPPRESS, metavar="V",
                               help=f"{dim.help}: the {'lowest' if end == 'min' else 'highest'} value (default {value})")
        else:
            g.add_argument(dim.flag, *dim.aliases, dest=dim.name, nargs="+", type=dim.kind, default=list(dim.default),
                           choices=dim.allowed or None, metavar="V", help=f"{dim.help}; the choices the space offers")


def space_from_args(a: argparse.Namespace) -> StudentSpace:
    """The space the options give; a range bound left out follows the other one given (``--max-epochs 1`` alone
    makes the epochs range 1-1)."""
    values = {}
    for dim in DIMENSIONS:
        if not dim.option:
            continue
        if dim.range:
            low, high = getattr(a, f"min_{dim.name}", None), getattr(a, f"max_{dim.name}", None)
            if low is None:
                low = dim.default[0] if high is None else min(dim.default[0], high)
            if high is None:
                high = max(dim.default[1], low)
            values[dim.name] = (low, high)
        else:
            values[dim.name] = tuple(getattr(a, dim.name))
    return StudentSpace(**values)


@dataclass
class RunPlan:
    """What a run will do, settled by ``plan`` before any work starts."""
    cfg: RunConfig
    experiment: Path
    splits: Splits
    texts_file: str | None   # unlabelled text the transfer sets sample (None: none)
    teacher: TeacherStageConfig  # gpus_per_trial is filled in once Ray runs (``run``)
    students: StudentStageConfig
    checks_s: float = 0.0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = parse_args(argv)
    from corpus import DataError
    from teachers import TeacherError

    try:
        teacher, search, experiment = run(plan(cfg))
    except (DataError, TeacherError, FileNotFoundError, ValueError, ConnectionError) as e:
        log.error("%s", e)
        return 2
    shown = "test" if "test" in teacher else "val"  # own data without a test file: validation only
    print(f"teacher: {shown} weighted F1 {teacher[shown]['weighted_f1']:.4f} "
          f"(accuracy {teacher[shown]['accuracy']:.4f}, macro F1 {teacher[shown]['macro_f1']:.4f})")
    if search:
        print_front(search, experiment)
    print(f"experiment: {experiment}")
    return 0


def plan(cfg: RunConfig) -> RunPlan:
    """Everything that can be checked, checked before any work starts: the storage, the data, the transfer
    text, the space and its enqueued points, the teacher."""
    from corpus import load_splits, load_table_splits
    from corpus.rusentiment import cache_root
    from search.experiment import Experiment
    from search.student_stage import StudentStageConfig, teacher_shape
    from search.teacher_stage import TeacherStageConfig, load_cached_teacher
    from spaces.student import StudentConfig, parse_point
    from teachers import encoder_shape, resolve_teacher

    t0 = time.time()
    experiment = Experiment.open(Path(cfg.storage).expanduser().resolve() / cfg.name, cfg.resume, cfg.min_free_gb)
    if cfg.train:
        splits = load_table_splits(cfg.train, cfg.val, cfg.test, cfg.text_column, cfg.label_column,
                                   seed=cfg.seed, max_train_samples=cfg.max_train_samples)
    else:
        splits = load_splits(cfg.data_dir, seed=cfg.seed, max_train_samples=cfg.max_train_samples,
                             val_from=cfg.val_from)
    transfer, texts_file = plan_transfer(cfg, len(splits.train))
    students = StudentStageConfig(trials=cfg.trials, cpus_per_trial=cfg.cpus_per_trial or 1, seed=cfg.seed,
                                  time_budget_s=cfg.time_budget_s, resume=cfg.resume, grace_rounds=cfg.grace_rounds,
                                  space=cfg.space, transfer=transfer, expert_model=cfg.expert_model,
                                  student=StudentConfig(transfer_ratio=cfg.transfer_ratio, max_size_mib=cfg.max_size_mb),
                                  enqueue=tuple(parse_point(t) for t in cfg.enqueue or ()))
    space = students.search_space()
    if cfg.enqueue is None:  # the default points, cut to the space this run searches (own data, other flags)
        students = replace(students, enqueue=tuple(space.restrict(parse_point(t)) for t in DEFAULT_ENQUEUE))
    for point in students.enqueue:
        space.check_point(point)
    # the teacher: a bad --teacher fails here, before Ray starts; its shape is what "pruned" students are cut from,
    # so a space the teacher cannot be cut to fails here too, before any work (when this run searches students)
    cached = load_cached_teacher(experiment.root, cfg.teacher) is not None
    source = None if cached else resolve_teacher(cfg.teacher, cache_root() / "teachers")
    if cfg.stage == "all":
        shape = teacher_shape(experiment.root) if cached else encoder_shape(source.location)
        replace(students, teacher_shape=shape).search_space()
    teacher = TeacherStageConfig(teacher=cfg.teacher, trials=cfg.teacher_trials, epochs=cfg.teacher_epochs,
                                 lr=cfg.teacher_lr, cpus_per_trial=cfg.cpus_per_trial or min(2, os.cpu_count() or 1),
                                 seed=cfg.seed if cfg.teacher_seed is None else cfg.teacher_seed)
    return RunPlan(cfg, experiment.root, splits, texts_file, teacher, students, checks_s=round(time.time() - t0, 1))


def plan_transfer(cfg: RunConfig, n_train: int) -> tuple[tuple, str | None]:
    """The transfer sets to build (``--transfer``, or real text when there is some) and the text file they sample;
    without any, one warning says what is missing and what it costs."""
    from corpus import DataError
    from corpus.transfer_text import default_transfer_texts, read_transfer_texts
    from search.transfer_stage import parse_transfer

    # own data (--train) never borrows the RuSentiment pool beside the default data dir: another domain
    texts_file = cfg.transfer_texts or (None if cfg.train else default_transfer_texts(cfg.data_dir))
    asked = cfg.transfer
    if asked is None:  # the default: real text when there is some
        asked = DEFAULT_TRANSFER if texts_file else ()
        if not texts_file:
            where = "" if cfg.train else (", no transfer/transfer_texts.csv beside the data dir, and no pool "
                                          "fetched by `python -m corpus.transfer_text fetch`")
            log.warning(f"no transfer text (no --transfer-texts{where}): the students learn from the labelled "
                        "posts only, which costs accuracy (the 'no transfer text' row of docs/results.md); give "
                        "unlabelled text of the same domain with --transfer-texts FILE.csv")
    transfer = tuple(parse_transfer(t, cfg.seed, n_train) for t in asked)
    if any(t.recipe == "real" for t in transfer):
        if texts_file is None:
            raise DataError("--transfer real:SIZE needs unlabelled text: pass --transfer-texts FILE (a CSV with a "
                            "'text' column)")
        read_transfer_texts(texts_file)  # a missing or malformed file fails before the teacher trains
    return transfer, texts_file


def run(p: RunPlan) -> tuple[dict, dict | None, Path]:
    """The stages of a plan, each timed into ``run.json``: (teacher figures, search summary or None, experiment)."""
    from corpus.rusentiment import cache_root
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
    write_json(layout.data, {**p.splits.describe(), "max_train_samples": p.cfg.max_train_samples})
    timed("ray_start", start_ray, p.cfg.address)
    teacher_cfg = replace(p.teacher, gpus_per_trial=gpus_per_trial(p.cfg.gpus_per_trial))
    teacher = timed("teacher", run_teacher_stage, teacher_cfg, p.splits, p.experiment, cache_root())
    search = None
    if p.cfg.stage in ("prepare", "all"):
        prepare_teacher_outputs(p.students, p.splits, p.experiment, teacher_cfg.cpus_per_trial, p.texts_file, timed)
    if p.cfg.stage == "all":
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
    print("Pareto front (int8 validation weighted F1 vs median batch-1 latency vs size):")
    print(front[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    layout = Experiment(experiment)
    print(f"trials table: {layout.table()}; front: {layout.front}")


if __name__ == "__main__":
    sys.exit(main())
