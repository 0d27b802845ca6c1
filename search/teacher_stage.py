"""Teacher stage: resolve the teacher, trim its vocabulary to the training pieces, fine-tune it with
Ray Tune (a small sweep if asked), then cache the best teacher's logits for distillation.

Every teacher output on the training posts is cached here, in ``<experiment>/teacher/``: logits
(train/val/test), pooled features, per-layer outputs and activation statistics (the last three
computed on demand by the stages that need them). Transfer sets (``transfer_stage``) hold the
teacher's outputs on other texts."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from corpus import Splits, encode_texts
from corpus.cache import reusable
from modeling import EncoderClassifier, classification_metrics
from modeling.vocab import choose_kept_ids, piece_counts, trim_embeddings, trim_tokenizer
from teachers import load_encoder, resolve_teacher
from trainables.loop import predict_logits
from trainables.worker import folder_bytes
from trainables.teacher import TeacherData, TeacherTrainConfig, train_teacher
from inference.atomic import atomic_file, write_json
from search.experiment import Experiment

log = logging.getLogger(__name__)
METRIC = "val_weighted_f1"
LR_GRID = (8e-5, 5e-5, 1.2e-4, 3e-5, 1.6e-4)


@dataclass
class TeacherStageConfig:
    teacher: str = "e5-small"
    trials: int = 1
    epochs: int = 3
    lr: float = 8e-5
    batch_size: int = 32
    max_length: int = 128
    cpus_per_trial: int = 2
    seed: int = 13
    gpus_per_trial: float = 0.0  # > 0: the trial trains on a GPU (bf16 autocast); caching uses one too


SAME_SPLITS = ("seed", "val_from", "checksums", "labels", "sizes", "max_train_samples")  # what cached logits depend on


def load_cached_teacher(experiment: Path, spec: str, splits: dict | None = None) -> dict | None:
    """The finished teacher's record, or None. A teacher of another ``--teacher``, or (given this run's
    ``splits.describe()``) one whose cached outputs were computed on other splits, is an error: its logits would be
    matched to the wrong posts."""
    layout = Experiment(experiment)
    if not layout.teacher_record.is_file():
        return None
    info = json.loads(layout.teacher_record.read_text())
    if info["stage"]["teacher"] != spec:
        raise ValueError(f"{experiment} already holds a teacher trained from {info['stage']['teacher']!r}, "
                         f"not {spec!r}; use another --name or the same --teacher")
    before = layout.record("data", missing_ok=True)
    if splits is not None and before:
        differ = [k for k in SAME_SPLITS if k in before and before[k] != splits.get(k)]
        if differ:
            raise ValueError(f"{layout.data}: the cached teacher's outputs were computed on other splits ({', '.join(differ)} "
                             f"differ: {', '.join(f'{k} {before[k]!r} now {splits.get(k)!r}' for k in differ)[:300]}); "
                             f"use another --name, or the same data, --seed and --max-train-samples")
    return info


def prepare_base(cfg: TeacherStageConfig, splits: Splits, out: Path, cache: Path):
    """Teacher encoder with its vocabulary trimmed to the pieces of train + validation."""
    source = resolve_teacher(cfg.teacher, cache / "teachers")
    encoder, tokenizer = load_encoder(source)
    texts = list(splits.train.text) + list(splits.val.text)
    full = encode_texts(texts, tokenizer, cfg.max_length, source.text_prefix, cache / "encoded")
    original = len(tokenizer)
    keep = choose_kept_ids(piece_counts(full, original), tokenizer)
    log.info("vocabulary: keeping %d of %d pieces (those seen in train+validation, plus specials)",
             len(keep), len(tokenizer))
    trim_embeddings(encoder, keep)
    tokenizer = trim_tokenizer(tokenizer, keep)
    encoder.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return source, tokenizer, {"kept_pieces": int(len(keep)), "original_pieces": original,
                               "rule": "pieces seen in train+validation, plus specials; unseen text is "
                                       "re-segmented into kept pieces (Unigram) or mapped to <unk>"}


def recompute_logits(experiment: Path, splits: Splits, names: list[str], cfg: TeacherStageConfig, cache: Path) -> None:
    """The teacher's logits on the named splits, from the saved model, written atomically."""
    import torch

    from trainables.device import training_device

    layout = Experiment(experiment)
    model, tok = EncoderClassifier.load(layout.teacher_model)
    torch.set_num_threads(cfg.cpus_per_trial)
    model.to(training_device(cfg.gpus_per_trial > 0))
    for name in names:
        df = {"train": splits.train, "val": splits.val, "test": splits.test}[name]
        enc = encode_texts(df.text, tok, model.config.max_length, model.config.text_prefix, cache / "encoded")
        with atomic_file(layout.logits(name)) as tmp:
            np.save(tmp, predict_logits(model, enc, tok.pad_token_id))
        log.info("teacher: logits on %s recomputed (the cached file was missing or damaged)", name)


def run_teacher_stage(cfg: TeacherStageConfig, splits: Splits, experiment: Path, cache: Path) -> dict:
    """The fine-tuned teacher and its logits on every split: reused when the experiment holds them (missing or
    damaged logits recomputed), else fine-tuned through Ray Tune (``tune_teacher``) and recorded
    (``record_teacher``). Returns ``teacher.json``'s content."""
    cached = load_cached_teacher(experiment, cfg.teacher)
    if cached:
        return reuse_teacher(cached, cfg, splits, experiment, cache)
    t0 = time.time()
    layout = Experiment(experiment)
    layout.teacher.mkdir(parents=True, exist_ok=True)
    source, tokenizer, vocab_info = prepare_base(cfg, splits, layout.teacher_base, cache)
    parts = [("train", splits.train), ("val", splits.val)] + ([("test", splits.test)] if splits.has_test else [])
    enc = {name: encode_texts(df.text, tokenizer, cfg.max_length, source.text_prefix, cache / "encoded")
           for name, df in parts}
    results, model = tune_teacher(cfg, splits, experiment, source, tokenizer, enc)
    train_s = time.time() - t0
    model.save(layout.teacher_model, tokenizer)
    info = {"stage": asdict(cfg), "vocab": vocab_info, "source": asdict(source),
            "best_config": dict(results.get_best_result(METRIC, "max", scope="all").config), "trials": []}
    return record_teacher(info, model, cfg, parts, enc, tokenizer.pad_token_id, results, layout, t0, train_s)


def reuse_teacher(cached: dict, cfg: TeacherStageConfig, splits: Splits, experiment: Path, cache: Path) -> dict:
    log.info("teacher: reusing %s (val weighted F1 %.4f)", Experiment(experiment).teacher, cached["val"]["weighted_f1"])
    soft = cached.get("soft_labels")
    if soft:  # installed by studies.soft_labels: the students learn from these logits, not the model's
        log.info("teacher: soft labels from %s (%s, %s; val weighted F1 %.4f)", soft["source"], soft["tag"],
                 "+".join(soft.get("members", [])), soft["val"]["weighted_f1"])
    layout = Experiment(experiment)
    names = ["train", "val"] + (["test"] if splits.has_test else [])
    damaged = [n for n in names if not reusable(layout.logits(n))]
    if damaged and soft:
        raise ValueError(f"{layout.teacher}: the cached logits {damaged} are missing or damaged and came from soft "
                         f"labels; install them again with python -m studies.soft_labels")
    if damaged:  # a killed process or a full disk: recompute them from the saved teacher
        recompute_logits(experiment, splits, damaged, cfg, cache)
    return cached


def tune_teacher(cfg: TeacherStageConfig, splits: Splits, experiment: Path, source, tokenizer, enc: dict):
    """Fine-tune through Ray Tune (a grid over learning rates when ``cfg.trials > 1``): (the result grid, the best
    trial's best checkpoint's model)."""
    from ray import tune

    layout = Experiment(experiment)
    data = TeacherData(folder_bytes(layout.teacher_base), tokenizer.pad_token_id, enc["train"], splits.train.label.to_numpy(),
                       enc["val"], splits.val.label.to_numpy(), labels=tuple(splits.labels))
    space = asdict(TeacherTrainConfig(lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size,
                                      pooling=source.pooling, text_prefix=source.text_prefix,
                                      max_length=cfg.max_length, seed=cfg.seed, threads=cfg.cpus_per_trial))
    if cfg.trials > 1:
        grid = [cfg.lr] + [lr for lr in LR_GRID if lr != cfg.lr]
        space["lr"] = tune.grid_search(grid[: cfg.trials])
    trainable = tune.with_resources(tune.with_parameters(train_teacher, data=data),
                                    {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial})
    tuner = tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(metric=METRIC, mode="max"),
        run_config=tune.RunConfig(
            name="teacher_trials", storage_path=str(experiment.resolve()),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=METRIC,
                                                    checkpoint_score_order="max"),
            failure_config=tune.FailureConfig(max_failures=1), verbose=1),
    )
    results = tuner.fit()
    best = results.get_best_result(METRIC, "max", scope="all")
    if best.error or best.get_best_checkpoint(METRIC, "max") is None:
        raise RuntimeError(f"no teacher trial finished: {best.error}")
    with best.get_best_checkpoint(METRIC, "max").as_directory() as d:
        model, _ = EncoderClassifier.load(Path(d) / "model")
    return results, model


def record_teacher(info: dict, model, cfg: TeacherStageConfig, parts, enc: dict, pad_id: int, results,
                   layout: Experiment, t0: float, train_s: float) -> dict:
    """The teacher's logits on every split (cached for distillation and the report), its figures and its trials,
    into ``teacher.json`` (written last: its presence marks the teacher complete)."""
    import torch

    from trainables.device import training_device

    log.info("teacher: computing logits on train / val / test for distillation and the report")
    torch.set_num_threads(cfg.cpus_per_trial)
    model.to(training_device(cfg.gpus_per_trial > 0))
    for name, df in parts:
        logits = predict_logits(model, enc[name], pad_id)
        with atomic_file(layout.logits(name)) as tmp:
            np.save(tmp, logits)
        m = classification_metrics(df.label.to_numpy(), logits.argmax(1))
        info[name] = {k: round(v, 4) for k, v in m.items()}
    df = results.get_dataframe(filter_metric=METRIC, filter_mode="max")
    for _, row in df.iterrows():
        info["trials"].append({"lr": row.get("config/lr"), "epochs": row.get("config/epochs"),
                               "best_epoch": int(row["epoch"]), METRIC: round(float(row[METRIC]), 4)})
    info["wall_time_s"] = {"fine_tuning": round(train_s, 1), "total": round(time.time() - t0, 1)}
    write_json(layout.teacher_record, info)  # written last: its presence marks the teacher complete
    shown = "test" if "test" in info else "val"
    log.info("teacher: val weighted F1 %.4f, %s weighted F1 %.4f (accuracy %.4f, macro F1 %.4f), %.0f s",
             info["val"]["weighted_f1"], shown, info[shown]["weighted_f1"], info[shown]["accuracy"],
             info[shown]["macro_f1"], info["wall_time_s"]["total"])
    return info


# the teacher's other outputs on the training posts, computed once from the saved teacher and cached
# in teacher/ beside its logits: pooled features (feature KD), per-layer outputs (hidden-state KD),
# activation statistics (what a pruned student keeps)

def ensure_train_features(splits: Splits, experiment: Path, cache: Path, threads: int) -> Path:
    """The teacher's pooled features on the labelled training posts (for feature distillation)."""
    return _teacher_train_outputs(splits, experiment, cache, threads, "pooled_train.npy", layers=False)


def ensure_importance(splits: Splits, experiment: Path, cache: Path, threads: int, posts: int = 2000,
                      seed: int = 13) -> Path:
    """The teacher's activation statistics (``modeling.prune.importance``) over ``posts`` training
    posts, cached as ``teacher/importance.npz``: what a pruned student keeps."""
    path = Experiment(experiment).teacher_output("importance.npz")
    if reusable(path):
        return path
    import torch

    from modeling import EncoderClassifier
    from modeling.prune import importance
    from trainables.loop import collate, length_batches

    t0 = time.time()
    teacher, tok = EncoderClassifier.load(Experiment(experiment).teacher_model)
    torch.set_num_threads(threads)
    texts = splits.train.text.sample(min(posts, len(splits.train)), random_state=seed).tolist()
    enc = encode_texts(texts, tok, teacher.config.max_length, teacher.config.text_prefix, cache / "encoded")
    batches = (collate(enc, index, tok.pad_token_id) for index in length_batches(enc.lengths(), 64, None))
    scores = importance(teacher, batches)
    with atomic_file(path) as tmp:
        np.savez(tmp, **scores)
    log.info("teacher activation statistics over %d training posts: %.0f s", len(texts), time.time() - t0)
    return path


def load_importance(experiment: Path) -> dict | None:
    path = Experiment(experiment).teacher_output("importance.npz")
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def ensure_train_layers(splits: Splits, experiment: Path, cache: Path, threads: int) -> Path:
    """Every teacher layer's output, mean-pooled, on the labelled training posts
    ([posts, teacher layers, hidden], float16), for hidden-state distillation from mapped layers."""
    return _teacher_train_outputs(splits, experiment, cache, threads, "layers_train.npy", layers=True)


def _teacher_train_outputs(splits: Splits, experiment: Path, cache: Path, threads: int, name: str,
                           layers: bool) -> Path:
    """Computes (once) and caches the teacher's pooled or per-layer outputs on the training posts."""
    path = Experiment(experiment).teacher_output(name)
    if reusable(path):
        return path
    import torch

    from modeling import EncoderClassifier
    from trainables.device import training_device
    from trainables.loop import predict_logits

    teacher, tok = EncoderClassifier.load(Experiment(experiment).teacher_model)
    torch.set_num_threads(threads)
    teacher.to(training_device())  # on a GPU when this machine has one
    enc = encode_texts(splits.train.text, tok, teacher.config.max_length, teacher.config.text_prefix,
                       cache / "encoded")
    _, feats = predict_logits(teacher, enc, tok.pad_token_id, progress=f"teacher {name} on train",
                              pooled=not layers, layers=layers)
    with atomic_file(path) as tmp:
        np.save(tmp, feats)
    return path
