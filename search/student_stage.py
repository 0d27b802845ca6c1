"""Student search: Ray Tune Tuner + OptunaSearch (multi-objective) + ASHA over ``spaces.student``."""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from corpus import Splits
from corpus.augment import TransferSpec
from corpus.transfer_text import Pools
from inference.atomic import atomic_file, write_json
from modeling.metrics import FIDELITY_PREFIX
from search.experiment import Experiment
from search.pareto import TRIVIAL, mark_trivial, pareto_front
from search.tune_state import repair, state_backup
from spaces.student import StudentConfig, StudentSpace, sample_student
from trainables.worker import folder_bytes
from trainables.metrics import ASHA_METRIC, LATENCY, OBJECTIVES, TRIAL_METRICS
from trainables.student import StudentData, student_config, train_student

log = logging.getLogger(__name__)
REDUCTION_FACTOR = 3  # ASHA's: rungs at rounds G, 3G, 9G, ... (G: grace_rounds); int8 is exported and validated there (ptq_rungs)


@dataclass
class StudentStageConfig:
    """The search: how many trials, ``space`` (``spaces.student.StudentSpace``: the table's dimensions; its
    ``transfer`` choices and the teacher's shape are filled in by ``search_space``), the transfer sets built for
    it, and ``student``, the StudentConfig settings every trial shares (threads and seed come from this config)."""
    trials: int = 40
    cpus_per_trial: int = 2
    seed: int = 13
    time_budget_s: float | None = None
    grace_rounds: int = 1  # ASHA's grace period (rounds): its rungs are G, G*3, G*9, ...
    asha_bands: tuple[float, ...] = ()  # cost-band edges: ASHA judges a trial within its band (search/scheduler.py)
    resume: bool = False
    space: StudentSpace = field(default_factory=StudentSpace)
    transfer: tuple[TransferSpec, ...] = ()   # teacher-labelled sets the space may add to the labelled posts
    expert_model: str = "svm"                  # the experts' linear model (modeling.expert.ExpertConfig.model)
    teacher_shape: tuple[int, int, int, int] | None = None  # (layers, hidden, heads, ffn); read from the teacher
    enqueue: tuple[dict, ...] = ()  # space points Optuna runs first (spaces.student.parse_point)
    student: StudentConfig = field(default_factory=StudentConfig)  # the settings the space does not sample

    def base_student(self) -> StudentConfig:
        return replace(self.student, threads=self.cpus_per_trial, seed=self.seed, ptq_rungs=REDUCTION_FACTOR,
                       ptq_grace=self.grace_rounds)

    def search_space(self) -> StudentSpace:
        """``space`` with the transfer choices the built sets give (none, each recipe, all joined by '+')."""
        recipes = [t.recipe for t in self.transfer]
        choices = ("none", *recipes, *(["+".join(recipes)] if len(recipes) > 1 else []))
        return replace(self.space, transfer=choices, teacher_shape=self.teacher_shape)


@dataclass(frozen=True)
class TeacherOutputs:
    """What a search needs from the teacher beyond its logits; the one rule, used by ``prepare_teacher_outputs``
    (which computes them), ``make_data`` (which loads them) and the studies."""
    pooled: bool      # teacher/pooled_train.npy and the transfer sets' pooled features: feature KD
    layers: bool      # teacher/layers_train.npy: hidden-state KD
    importance: bool  # teacher/importance.npz: students cut from the teacher ("pruned")

    @classmethod
    def of(cls, space: StudentSpace) -> TeacherOutputs:
        return cls(pooled=any(w > 0 for w in space.feature_kd), layers=any(w > 0 for w in space.hidden_kd),
                   importance="pruned" in space.init)


def prepare_teacher_outputs(cfg: StudentStageConfig, splits: Splits, experiment: Path, threads: int,
                            pools: Pools, timed=lambda name, fn, *a, **k: fn(*a, **k)) -> None:
    """Everything the search reads from the teacher, computed once and cached in the experiment: the transfer
    sets (teacher-labelled), and the pooled features, layer outputs and activation statistics ``TeacherOutputs``
    asks for. ``timed(name, fn, *args)`` runs each step (``search/run.py`` times them)."""
    from corpus.cache import cache_root
    from search.teacher_stage import ensure_importance, ensure_train_layers
    from search.transfer_stage import label_fidelity_slice, run_transfer_stage

    needs = TeacherOutputs.of(cfg.space)
    if cfg.transfer or needs.pooled:
        timed("transfer", run_transfer_stage, list(cfg.transfer), splits, experiment, cache_root(), threads,
              features=needs.pooled, pools=pools)
    timed("fidelity_slice", label_fidelity_slice, pools, experiment, cache_root(), threads)
    if needs.importance:
        timed("importance", ensure_importance, splits, experiment, cache_root(), threads, seed=splits.seed)
    if needs.layers:
        timed("teacher_layers", ensure_train_layers, splits, experiment, cache_root(), threads)


def teacher_shape(experiment: Path) -> tuple[int, int, int, int]:
    """(layers, hidden, heads, ffn) of the experiment's fine-tuned teacher encoder."""
    c = json.loads((Experiment(experiment).teacher_model / "encoder" / "config.json").read_text())
    return c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"], c["intermediate_size"]


def make_data(splits: Splits, experiment: Path, cfg: StudentStageConfig) -> StudentData:
    from search.teacher_stage import load_importance
    from search.transfer_stage import load_fidelity, load_transfer

    layout = Experiment(experiment)
    pooled, layers = layout.teacher_output("pooled_train.npy"), layout.teacher_output("layers_train.npy")
    needs = TeacherOutputs.of(cfg.space)
    data = StudentData(
        teacher_files=folder_bytes(layout.teacher_model),
        train_texts=splits.train.text.tolist(), train_labels=splits.train.label.to_numpy(),
        train_logits=np.load(layout.logits("train")), val_texts=splits.val.text.tolist(),
        val_labels=splits.val.label.to_numpy(),
        train_pooled=np.load(pooled) if pooled.is_file() else None,
        train_layers=np.load(layers) if layers.is_file() and needs.layers else None,
        transfer={t.recipe: load_transfer(experiment, t) for t in cfg.transfer},
        importance=load_importance(experiment) if needs.importance else None,
    )
    t0 = time.time()
    data.lexical_features(tuple(b for b in cfg.space.lexical_buckets if b))
    if data.lexical:
        log.info("lexical features of %d pool texts for %s buckets: %.0f s", len(data.train_texts) + sum(
            len(t[0]) for t in data.transfer.values()), "/".join(map(str, data.lexical)), time.time() - t0)
    data.experts, train_log_probs = fit_experts(splits, cfg, experiment)
    data.fidelity = load_fidelity(experiment)
    data.gate_texts = gate_texts(data.transfer, cfg.seed) if data.experts else None
    if any(w > 0 for w in cfg.space.fused_weight):  # fused training: the expert's view of every pool post
        t0 = time.time()
        for buckets, (expert, _, _) in data.experts.items():
            data.expert_pool[buckets] = {"train": train_log_probs[buckets],
                                         **{recipe: expert.log_probs(t[0]) for recipe, t in data.transfer.items()}}
        log.info("gold expert's log-probabilities of the pool for fused training: %.0f s", time.time() - t0)
    return data


def gate_texts(transfer: dict, seed: int) -> tuple[list[str], np.ndarray] | None:
    """A seeded sample (``modeling.expert.GATE_TEXTS``) of the real-text transfer sets' texts and teacher logits,
    which the expert's text-dependent weight is fitted on; None without a real-text set."""
    from corpus.augment import REAL
    from modeling.expert import GATE_TEXTS

    sets = [transfer[r] for r in REAL if r in transfer]
    if not sets:
        return None
    texts = [t for s in sets for t in s[0]]
    logits = np.concatenate([s[1] for s in sets])
    pick = np.sort(np.random.default_rng(seed).choice(len(texts), min(GATE_TEXTS, len(texts)), replace=False))
    return [texts[i] for i in pick], logits[pick]


def fit_experts(splits: Splits, cfg: StudentStageConfig, experiment: Path) -> tuple[dict, dict]:
    """The gold-label lexical experts the space offers, fitted once for the search on the training
    posts' gold labels: (buckets -> (GoldExpert, its validation log-probabilities, fit record), buckets -> its
    cross-fitted log-probabilities of the training posts); each record also goes to
    ``<experiment>/expert_<buckets>.json``."""
    from modeling.expert import ExpertConfig, fit_expert_cross_fitted
    from modeling.metrics import classification_metrics

    experts, train_log_probs = {}, {}
    for buckets in sorted({b for b in cfg.space.expert_buckets if b}):
        expert, record, train_log_probs[buckets] = fit_expert_cross_fitted(
            splits.train.text.tolist(), splits.train.label.to_numpy(),
            ExpertConfig(buckets=buckets, model=cfg.expert_model, seed=cfg.seed))
        val = expert.log_probs(splits.val.text.tolist())
        record.update({f"alone_{k}": v for k, v in
                       classification_metrics(splits.val.label.to_numpy(), val.argmax(1), "val_").items()})
        write_json(Experiment(experiment).expert_record(buckets), record)
        experts[buckets] = (expert, val, record)
    return experts, train_log_probs


STUDY_NAME = "students"


def study_storage(experiment: Path, fresh: bool = False):
    """The Optuna study behind the search, stored in ``<experiment>/optuna.db`` (SQLite) so that
    ``optuna-dashboard sqlite:///<experiment>/optuna.db`` and Optuna's own plots can open it.
    ``fresh``: a new search replaces the study an earlier one left there."""
    import optuna

    url = f"sqlite:///{Experiment(experiment).study.resolve()}"
    storage = optuna.storages.RDBStorage(url)
    if fresh and STUDY_NAME in [s.study_name for s in optuna.get_all_study_summaries(storage)]:
        log.warning("%s: replacing the study %r of an earlier search", Experiment(experiment).study, STUDY_NAME)
        optuna.delete_study(study_name=STUDY_NAME, storage=storage)
    return storage


def name_objectives(experiment: Path) -> None:
    """Give the stored study's objectives their names (optuna-dashboard and Optuna's plots show them)."""
    import optuna

    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{Experiment(experiment).study.resolve()}")
    study.set_metric_names(list(OBJECTIVES))


def trial_progress(total: int, rounds_per_epoch: int):
    """A Ray Tune callback that logs one line each time a trial ends: trials done of ``total`` (completed,
    stopped by ASHA, failed), the stage's elapsed time and a rough estimate of what is left (elapsed per
    trial done so far, times the trials to go), on top of Ray's tables."""
    from ray import tune

    class TrialProgress(tune.Callback):
        def setup(self, **info):
            self.start = time.monotonic()

        def _line(self, trials, trial, how):
            # the trial that just ended has not got its final status yet
            done = [t for t in trials if t.status in ("TERMINATED", "ERROR") and t is not trial] + [trial]
            failed = sum(t.status == "ERROR" for t in done if t is not trial) + (how == "failed")
            stopped = sum(t.last_result.get("round", 0) < t.config.get("epochs", 0) * rounds_per_epoch for t in done
                          if t.last_result and not (t.status == "ERROR" or (t is trial and how == "failed")))
            elapsed = time.monotonic() - self.start
            left = elapsed / len(done) * max(0, total - len(done)) if done else float("nan")
            log.info("student search: %d/%d trials done (%d stopped early by ASHA, %d failed; %s %s), "
                     "%.0f min elapsed, about %.0f min left", len(done), total, stopped,
                     failed, trial.trial_id, how, elapsed / 60, left / 60)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._line(trials, trial, "ended")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._line(trials, trial, "failed")

    return TrialProgress()


def make_tuner(cfg: StudentStageConfig, data: StudentData, experiment: Path):
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from search.scheduler import BandedASHA

    trainable = tune.with_resources(tune.with_parameters(train_student, data=data, base=cfg.base_student()), {"cpu": cfg.cpus_per_trial})
    path = Experiment(experiment.resolve()).trials
    if cfg.resume:
        if not tune.Tuner.can_restore(str(path)):
            raise FileNotFoundError(f"--resume: no student search to resume in {path}; run without --resume")
        log.info("resuming the student search in %s", path)
        repair(path)  # a state file the kill cut short would make Tune silently start the search again
        return tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    searcher = OptunaSearch(space=partial(sample_student, space=cfg.search_space()), points_to_evaluate=list(cfg.enqueue) or None,
                            metric=list(OBJECTIVES), mode=list(OBJECTIVES.values()), seed=cfg.seed,
                            storage=study_storage(experiment, fresh=True), study_name=STUDY_NAME)
    scheduler = BandedASHA(edges=cfg.asha_bands, time_attr="round", metric=ASHA_METRIC, mode="max",
                           max_t=cfg.space.epochs[1] * cfg.student.evals_per_epoch, grace_period=cfg.grace_rounds,
                           reduction_factor=REDUCTION_FACTOR)
    cpus = int(ray.cluster_resources().get("CPU", cfg.cpus_per_trial))
    return tune.Tuner(
        trainable,
        # reuse_actors: a finished trial's worker process takes the next trial (every trial seeds itself and sets its
        # threads), which saves its start-up (~3.5 s: torch and transformers imported again) per trial
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=cfg.trials,
                                    max_concurrent_trials=max(1, cpus // cfg.cpus_per_trial),
                                    time_budget_s=cfg.time_budget_s, reuse_actors=True),
        run_config=tune.RunConfig(
            name=Experiment(experiment).trials.name, storage_path=str(experiment.resolve()),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),  # 2: search/tune_state.py
            failure_config=tune.FailureConfig(max_failures=1), verbose=1,
            callbacks=[trial_progress(cfg.trials, cfg.student.evals_per_epoch), state_backup(path)]),
    )


CONFIG_COLUMNS = [f.name for f in fields(StudentConfig)]  # every trial's full student, sampled or shared
NO_REPORT = "stopped (time budget) before its first report"


def trial_row(trial_id: str, student: dict, metrics: dict, status: str, error: str = "",
              extra: dict | None = None) -> dict:
    """One row of ``trials.csv`` (a study's ``<tag>.csv`` has the same columns, its ``extra`` ones after them):
    the trial's full StudentConfig, ``TRIAL_METRICS`` (None where the trial measured nothing), status, error."""
    return {"trial_id": trial_id, **{c: student.get(c) for c in CONFIG_COLUMNS},
            **{c: metrics.get(c) for c in TRIAL_METRICS},
            **{c: v for c, v in metrics.items() if c.startswith(FIDELITY_PREFIX)},
            "status": status, "error": error, **(extra or {})}


def collect_trials(results, experiment: Path, base: StudentConfig, models: str = "students") -> pd.DataFrame:
    """One row per trial (its full StudentConfig: ``base`` with the trial's sampled values; status,
    fp32 and int8 metrics, speed, size); copies each trial's int8 model folder to
    ``<models>/<trial_id>`` and its fp32 torch model to ``<models>_fp32/<trial_id>``."""
    rows = []
    out_dir = Experiment(experiment).models(models)
    out_dir.mkdir(exist_ok=True)
    for r in results:
        m = r.metrics or {}
        trial_id = m.get("trial_id") or Path(r.path).name
        try:
            student = asdict(student_config(r.config, base))
        except (TypeError, ValueError):  # a config no student can have: its error says why
            student = r.config
        if r.error:
            status, error = "error", str(r.error).strip().splitlines()[-1][:300]
        elif m.get("round") is None:
            status, error = "stopped_early", NO_REPORT
        elif m.get("epoch") is not None and m["epoch"] < r.config.get("epochs", 0):
            status, error = "stopped_early", ""  # by ASHA or by --time-budget-s
        else:
            status, error = "completed", ""
        row = trial_row(trial_id, student, m, status, error)
        if r.checkpoint is not None:
            with r.checkpoint.as_directory() as d:
                if (Path(d) / "model").is_dir():
                    dest = out_dir / trial_id
                    shutil.rmtree(dest, ignore_errors=True)
                    shutil.copytree(Path(d) / "model", dest)
                    row["model_dir"] = str(dest.relative_to(experiment))
                if (Path(d) / "torch").is_dir():
                    dest = Experiment(experiment).models(f"{models}_fp32") / trial_id
                    shutil.rmtree(dest, ignore_errors=True)
                    shutil.copytree(Path(d) / "torch", dest)
        rows.append(row)
    return pd.DataFrame(rows)


def write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    with atomic_file(path) as tmp:
        df.to_csv(tmp, index=False)


def evaluate_on_test(front: pd.DataFrame, splits: Splits, experiment: Path,
                     extra_tests: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Test figures (with a bootstrap 95 % interval of weighted F1) for front members only (never
    used for selection); ``extra_tests`` (name -> ``label,text`` frame, e.g. an out-of-domain
    test) add ``<name>_`` columns the same way. Each member's test predictions are saved beside
    in ``predictions/<trial>_<name>.npy`` for paired comparisons."""
    tests = {**({"test": splits.test} if splits.has_test else {}), **(extra_tests or {})}
    rows = []
    for _, r in front.iterrows():
        if not isinstance(r.get("model_dir"), str):
            continue
        figures, preds = evaluate_folder(experiment / r["model_dir"], tests)
        Experiment(experiment).predictions.mkdir(exist_ok=True)
        for name, pred in preds.items():
            with atomic_file(Experiment(experiment).prediction(r["trial_id"], name)) as tmp:
                np.save(tmp, pred)
        rows.append({"trial_id": r["trial_id"], **figures})
    return front.merge(pd.DataFrame(rows), on="trial_id", how="left") if rows else front


def evaluate_folder(folder: Path, tests: dict[str, pd.DataFrame]) -> tuple[dict, dict[str, np.ndarray]]:
    """An exported folder, run by the torch-free runtime on each ``label,text`` frame of ``tests``:
    ``<name>_`` accuracy / weighted F1 / macro F1 and a bootstrap 95 % interval of weighted F1, and
    the predictions. For a folder fused with a gold expert, also the student alone (``<name>_student_``,
    predictions ``<name>_student``) and the expert alone (``<name>_expert_``, ``<name>_expert``): the
    same trained student with and without the expert, for paired comparisons."""
    from inference import SentimentClassifier
    from modeling import classification_metrics
    from modeling.metrics import bootstrap_interval

    clf = SentimentClassifier.load(folder, threads=2)
    figures, preds = {}, {}
    for name, df in tests.items():
        y = df.label.to_numpy()
        texts = df.text.tolist()
        preds[name] = pred = clf.logits(texts, 64).argmax(1)
        figures.update(classification_metrics(y, pred, f"{name}_"))
        figures[f"{name}_wf1_low"], figures[f"{name}_wf1_high"] = bootstrap_interval(y, pred)
        if clf.fused:
            preds[f"{name}_student"] = clf.student_logits(texts, 64).argmax(1)
            preds[f"{name}_expert"] = clf.expert_log_probs(texts).argmax(1)
            parts = ["student", "expert"]
            if clf.gate is not None and clf.gate.slope > 0:  # the same folder at one weight for every text
                gate, clf.gate = clf.gate, None
                preds[f"{name}_fixed"] = clf.logits(texts, 64).argmax(1)
                clf.gate = gate
                parts.append("fixed")
            for part in parts:
                figures.update(classification_metrics(y, preds[f"{name}_{part}"], f"{name}_{part}_"))
    return figures, preds


def run_student_stage(cfg: StudentStageConfig, splits: Splits, experiment: Path) -> dict:
    from trainables.bench_slot import start_benchmark_slot

    t0 = time.time()
    cfg = replace(cfg, teacher_shape=teacher_shape(experiment))
    space = cfg.search_space()  # a space the teacher cannot be cut to, or a point outside it, fails here
    for point in cfg.enqueue:
        space.check_point(point)
    data = make_data(splits, experiment, cfg)
    start_benchmark_slot()
    tuner = make_tuner(cfg, data, experiment)
    results = tuner.fit()
    name_objectives(experiment)
    df, trivial_bar = mark_trivial(collect_trials(results, experiment, cfg.base_student()), splits.val.label)
    if df[TRIVIAL].any():
        log.warning("%d trial(s) no better than the trivial predictor on validation (weighted F1 <= %.4f): "
                    "marked in trials.csv, kept off the front: %s", int(df[TRIVIAL].sum()), trivial_bar,
                    ", ".join(df.trial_id[df[TRIVIAL]]))
    layout = Experiment(experiment)
    write_csv_atomic(df, layout.table())
    front = evaluate_on_test(pareto_front(df), splits, experiment)
    write_csv_atomic(front, layout.front)
    summary = {"trials": len(df), "status_counts": df["status"].value_counts().to_dict(),
               "trivial": {"val_weighted_f1": round(trivial_bar, 4), "trials": df.trial_id[df[TRIVIAL]].tolist()},
               "wall_time_s": round(time.time() - t0, 1), "front": front.to_dict(orient="records")}
    write_json(layout.search, summary)
    return summary
