"""The run's configuration: one tree of dataclasses, the one place a run's settings are declared.

``RunConfig`` is what ``python search/run.py`` runs; each section is a dataclass whose fields carry their
command-line option (``option``: flag, help, parser), so the CLI, its ``--help`` and the defaults come from here
and nowhere else::

    RunConfig
      experiment: ExperimentConfig   where the run is stored, its seed, which stages run, resume
      data:       DataConfig         which labelled posts: RuSentiment or your own files, and how they split
      teacher:    TeacherConfig      the encoder fine-tuned as the teacher
      transfer:   TransferConfig     teacher-labelled text the students also learn from
      search:     SearchConfig       the student search: trials, ASHA, enqueued points, the size limit
      cluster:    ClusterConfig      the Ray cluster and what each trial gets of it
      space:      StudentSpace       the searched dimensions (spaces/student.py:DIMENSIONS, one table)

``search/run.py:plan`` turns the tree into each stage's own config (``TeacherStageConfig``,
``StudentStageConfig``): the settings a stage resolves (CPUs per trial, the transfer sets, the enqueued points)
are resolved there, once. ``search/cli.py`` turns any dataclass of ``option`` fields into options (the studies'
CLIs use it too).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from search.cli import add_options, from_args, option, positive_int
from spaces.student import DIMENSIONS, StudentSpace


TEACHERS_HELP = ("e5-small (offline, default), a Hugging Face hub id such as cointegrated/rubert-tiny2, or a local "
                 "model directory")


@dataclass(frozen=True)
class ExperimentConfig:
    """where the run is stored, its seed, which stages run"""
    storage: str = option("experiments", "where experiments are stored (path)")
    name: str = option("rusentiment", "experiment name (a folder under --storage)")
    seed: int = option(13, "seed of the validation split, training and sampling")
    stage: str = option("all", "stop after the teacher stage; after the teacher, its transfer sets and activation "
                        "statistics (prepare: everything the search reads, e.g. on a GPU machine); or run the "
                        "student search too", choices=("teacher", "prepare", "all"))
    resume: bool = option(False, "continue the student search stored in --storage/--name")
    min_free_gib: float = option(3.0, "refuse to start when --storage has less free space than this (GiB)",
                                 flags=("--min-free-gib", "--min-free-gb"))


@dataclass(frozen=True)
class DataConfig:
    """which labelled posts: RuSentiment (--data-dir) or your own files (--train)"""
    data_dir: str | None = option(None, "folder with the RuSentiment CSVs (else $RUSENTIMENT_DATA_DIR, else "
                                  "download)")
    train: str | None = option(None, "your own labelled texts: CSV, TSV, JSON Lines or Parquet, a datasets "
                               "save_to_disk folder, or a Hugging Face dataset name; any label set (2+ classes)",
                               metavar="FILE|DIR|NAME")
    val: str | None = option(None, "validation data (same forms; default: a stratified 10%% of --train)")
    test: str | None = option(None, "test data (same forms; default: none, figures are validation-only)")
    text_column: str = option("text", "column holding the texts in --train/--val/--test")
    label_column: str = option("label", "column holding the labels in --train/--val/--test")
    max_train_samples: int | None = option(None, "stratified subset of the training posts (quick runs)",
                                           parse=positive_int)
    val_from: str = option("random", "carve validation from the random posts only (like the test file) or from "
                           "random + preselected (the older split)", choices=("random", "all"))


@dataclass(frozen=True)
class TeacherConfig:
    """the encoder fine-tuned as the teacher (a small Ray Tune grid over learning rates)"""
    model: str = option("e5-small", TEACHERS_HELP, flags=("--teacher",))
    trials: int = option(1, "teacher learning rates to try (a small Ray Tune grid)", flags=("--teacher-trials",),
                         parse=positive_int)
    epochs: int = option(3, "teacher fine-tuning epochs", flags=("--teacher-epochs",), parse=positive_int)
    lr: float = option(8e-5, "the teacher's (first) learning rate", flags=("--teacher-lr",))
    seed: int | None = option(None, "seed of the teacher's training only (initialisation, dropout, batch order); "
                              "default --seed", flags=("--teacher-seed",), parse=int)


@dataclass(frozen=True)
class TransferConfig:
    """teacher-labelled text the students learn from beside the labelled posts"""
    sets: tuple[str, ...] | None = option(
        None, "teacher-labelled transfer sets the space may add to the labelled posts: real (a sample of "
        "--transfer-texts) or generated from the training posts (tang, span, join; see corpus/augment.py); SIZE "
        "posts or K times the training posts; none: --transfer with no value; default: real:40000 when the "
        "transfer text file exists, else none", flags=("--transfer",), nargs="*", metavar="RECIPE:SIZE|RECIPE:xK")
    texts: str | None = option(None, "unlabelled text (CSV with a 'text' column) for --transfer real:SIZE; "
                               "default <data-dir>/../transfer/transfer_texts.csv when it exists",
                               flags=("--transfer-texts",))
    broad_texts: str | None = option(None, "unlabelled text of other domains (reviews, tweets, comments, dialogue; "
                                     "CSV with 'source,text') for --transfer broad:SIZE; default "
                                     "<data-dir>/../transfer-broad/broad_texts.csv when it exists",
                                     flags=("--broad-texts",))
    broad_sources: tuple[str, ...] = option((), "the sources of --broad-texts that broad:SIZE draws from (default: "
                                            "all); 'licensed': the three whose repositories state a licence "
                                            "(wb_marketplace_reviews, multiwoz_ru_dialogues, xed_subtitles)",
                                            flags=("--broad-sources",), nargs="*")
    ratio: float = option(0.5, "transfer posts drawn per epoch, as a multiple of the labelled posts (all labelled "
                          "posts are seen every epoch)", flags=("--transfer-ratio",))


@dataclass(frozen=True)
class SearchConfig:
    """the student search: Optuna samples through Ray Tune, ASHA stops the weak"""
    trials: int = option(40, "student trials (Optuna samples)", parse=positive_int)
    time_budget_s: float | None = option(None, "stop starting/continuing trials after this", parse=float)
    grace_rounds: int = option(2, "ASHA's grace period in rounds (quarter epochs): no trial stops before it; rungs "
                               "at G, 3G, 9G", parse=positive_int)
    asha_bands: tuple[float, ...] = option(
        (0.3, 1.2), "ASHA judges a trial only against trials of its own cost band: edges in millions of "
        "multiply-accumulates per token of the student's layers (1 x 128, FFN 256: 0.13; 3 x 192, FFN 384: 0.88; "
        "4 x 256, FFN 512: 2.1; search/scheduler.py), so the best fast students train to the end too; none: --asha-bands "
        "with no value (plain ASHA)", parse=float, nargs="*", metavar="MMACS")
    expert_model: str = option("svm", "the gold expert's linear model, calibrated on cross-fitted scores (nbsvm: "
                               "LinearSVC on naive-Bayes-scaled features; modeling/expert.py)",
                               choices=("svm", "logreg", "nbsvm"))
    max_size_mib: float = option(5.0, "size limit (MiB) of a shipped student: the vocabulary shrinks until the "
                                 "estimate fits", flags=("--max-size-mib", "--max-size-mb"))
    bench_texts: int = option(300, "texts timed one at a time in each trial's CPU benchmark (latency medians; fewer "
                              "is quicker and noisier: the tests use 20)", parse=positive_int)
    enqueue: tuple[str, ...] | None = option(
        None, "trials Optuna runs first, over the space's parameters (layers, hidden, init, ffn_ratio, vocab, "
        "kd_alpha, kd_temperature, lr, epochs, transfer, lexical_buckets, ...), e.g. a student an ablation found "
        "good; default: the shipped recipe and two smaller ones with the gold expert (settings outside the space "
        "dropped); none: --enqueue with no value", nargs="*", metavar="NAME=VALUE,...")


@dataclass(frozen=True)
class ClusterConfig:
    """the Ray cluster and what each trial gets of it"""
    address: str | None = option(None, "Ray cluster address (auto or ray://HOST:PORT); default: local")
    cpus_per_trial: int | None = option(None, "CPUs per trial; default: up to 2 for the teacher, 1 per student "
                                        "trial (two students train side by side on 2 cores)", parse=positive_int)
    gpus_per_trial: float | None = option(None, "GPUs per teacher trial (fine-tuning, then teacher outputs and "
                                          "transfer labelling on the GPU with bf16); default: 1 when the Ray "
                                          "cluster has a GPU, else 0. Students train and every latency is "
                                          "measured on CPU", parse=float)


SECTIONS = {"experiment": ExperimentConfig, "data": DataConfig, "teacher": TeacherConfig,
            "transfer": TransferConfig, "search": SearchConfig, "cluster": ClusterConfig}


@dataclass(frozen=True)
class RunConfig:
    """A run of ``search/run.py``: every setting, by section (the module's docstring draws the tree)."""
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    space: StudentSpace = field(default_factory=StudentSpace)


def add_space_options(p: argparse.ArgumentParser) -> None:
    """One option per row of ``spaces.student.DIMENSIONS``: ``--NAME V ...`` (the choices the space offers) or
    ``--min-NAME``/``--max-NAME`` (a range's bounds)."""
    g = p.add_argument_group("space: the student search space (spaces/student.py:DIMENSIONS; the defaults are the "
                             "best measured recipe)")
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


def parse_run_config(argv: list[str] | None = None, description: str | None = None) -> RunConfig:
    """``search/run.py``'s command line -> ``RunConfig`` (``--help`` lists the options by section)."""
    p = argparse.ArgumentParser(prog="search/run.py", description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for name, cls in SECTIONS.items():
        add_options(p, cls, name)
    add_space_options(p)
    a = p.parse_args(argv)
    cfg = {name: from_args(cls, a, name) for name, cls in SECTIONS.items()}
    if (cfg["data"].val or cfg["data"].test) and not cfg["data"].train:
        p.error("--val and --test go with --train (your own data); RuSentiment's splits come from --data-dir")
    try:
        space = space_from_args(a)
    except ValueError as e:
        p.error(str(e))
    return RunConfig(**cfg, space=space)
