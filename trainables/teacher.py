"""Ray Tune trainable that fine-tunes a teacher encoder for RuSentiment classification.

Pooling: mean over the attention mask for e5 (the pooling it was pre-trained with, so the
pooled vector is meaningful from step 0), CLS for BERT-style hub checkpoints.
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from corpus import LABELS
from corpus.encode import Encoded
from modeling import ClassifierConfig, EncoderClassifier, classification_metrics

from .device import autocast_context, training_device
from .loop import collate, length_batches, linear_warmup_decay, optimizer_step, predict_logits, steps_per_epoch
from .worker import setup_worker_logging, write_folder

log = logging.getLogger(__name__)


@dataclass
class TeacherTrainConfig:
    lr: float = 8e-5
    epochs: int = 3
    batch_size: int = 32
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    layer_decay: float = 1.0     # layer-wise lr decay (1.0 = off)
    dropout: float = 0.1
    pooling: str = "mean"
    text_prefix: str = ""
    max_length: int = 128
    seed: int = 13
    threads: int = 2
    bf16: str = "auto"


@dataclass
class TeacherData:
    """What a teacher trial needs; shipped to workers through Ray's object store."""
    base_files: dict          # the (vocabulary-trimmed) encoder's Hugging Face directory, path -> bytes
    pad_id: int
    train: Encoded
    train_labels: np.ndarray
    val: Encoded
    val_labels: np.ndarray
    labels: tuple[str, ...] = LABELS  # the classes, in output order (the data's own)


def param_groups(model: EncoderClassifier, cfg: TeacherTrainConfig) -> list[dict]:
    """AdamW groups: no decay on biases/LayerNorm; lr x layer_decay^(depth from the top)."""
    n_layers = model.encoder.config.num_hidden_layers
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if name.startswith("encoder.embeddings"):
            depth = n_layers + 1
        elif ".layer." in name:
            depth = n_layers - int(name.split(".layer.")[1].split(".")[0])
        else:
            depth = 0
        lr = cfg.lr * cfg.layer_decay ** depth
        wd = 0.0 if p.ndim == 1 else cfg.weight_decay
        groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def build_teacher(data: TeacherData, cfg: TeacherTrainConfig):
    """(classifier, tokenizer) from the shipped encoder directory."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    with tempfile.TemporaryDirectory() as d:
        base = write_folder(data.base_files, Path(d))
        kwargs = {"add_pooling_layer": False} if AutoConfig.from_pretrained(base).model_type == "bert" else {}
        encoder = AutoModel.from_pretrained(base, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(base)
    model = EncoderClassifier(encoder, ClassifierConfig(labels=list(data.labels), pooling=cfg.pooling, dropout=cfg.dropout,
                                                        text_prefix=cfg.text_prefix, max_length=cfg.max_length))
    return model, tokenizer


def optimizer_and_schedule(model: EncoderClassifier, n_train: int, cfg: TeacherTrainConfig):
    """AdamW over ``param_groups`` and the linear warm-up/decay over all of ``cfg.epochs``."""
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr)
    total = steps_per_epoch(n_train, cfg.batch_size) * cfg.epochs
    return optimizer, linear_warmup_decay(optimizer, int(cfg.warmup_ratio * total), total)


def start_fine_tune(data: TeacherData, cfg: TeacherTrainConfig, device):
    """The one fine-tuning set-up (the Ray trainable's and ``studies/teacher_recipes.py``'s): seeds,
    the classifier on ``device``, optimizer and schedule. Returns (model, tokenizer, optimizer,
    scheduler, rng)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model, tokenizer = build_teacher(data, cfg)
    model.to(device)
    optimizer, scheduler = optimizer_and_schedule(model, len(data.train), cfg)
    return model, tokenizer, optimizer, scheduler, rng


def train_epoch(model, data: TeacherData, cfg: TeacherTrainConfig, optimizer, scheduler, rng, epoch: int) -> dict:
    """One pass over the training posts on the model's device, then validation metrics."""
    t0, losses = time.time(), []
    device = next(model.parameters()).device
    labels = torch.tensor(data.train_labels, device=device)
    model.train()
    batches = length_batches(data.train.lengths(), cfg.batch_size, rng)
    for step, index in enumerate(batches):
        ids, mask = (t.to(device) for t in collate(data.train, index, data.pad_id))
        with autocast_context(cfg.bf16, device.type):
            logits = model(ids, mask)
        losses.append(optimizer_step(model, F.cross_entropy(logits.float(), labels[index]), optimizer, scheduler))
        if step % 100 == 0:
            elapsed = time.time() - t0
            # what is left of the trial at this epoch's pace (the steps to go in this epoch and the later ones)
            left = (f"about {elapsed / step * (len(batches) * (cfg.epochs - epoch) - step) / 60:.0f} min left in "
                    "this trial") if step else "time left known after 100 steps"
            log.info("epoch %d/%d step %d/%d loss %.4f (%.1fs; %s)", epoch + 1, cfg.epochs, step, len(batches),
                     np.mean(losses[-100:]), elapsed, left)
    train_time = time.time() - t0
    val_logits = predict_logits(model, data.val, data.pad_id, bf16=cfg.bf16)
    metrics = classification_metrics(data.val_labels, val_logits.argmax(1), prefix="val_")
    metrics.update(epoch=epoch + 1, train_loss=float(np.mean(losses)), epoch_train_s=train_time,
                   epoch_total_s=time.time() - t0)
    return metrics


def train_teacher(config: dict, data: TeacherData) -> None:
    """Ray Tune function trainable: one epoch = one report (validation metrics + checkpoint)."""
    from trainables.quiet import quiet_known_warnings

    quiet_known_warnings(worker=True)
    from ray import tune

    setup_worker_logging()
    cfg = TeacherTrainConfig(**config)
    torch.set_num_threads(cfg.threads)
    device = training_device()  # a GPU when the trial was given one (--gpus-per-trial), bf16 autocast there
    model, tokenizer, optimizer, scheduler, rng = start_fine_tune(data, cfg, device)
    log.info("teacher trial on %s", torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU")
    start_epoch = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            model, _ = EncoderClassifier.load(Path(d) / "model")
            model.to(device)
            optimizer, scheduler = optimizer_and_schedule(model, len(data.train), cfg)
            state = torch.load(Path(d) / "train_state.pt", weights_only=False, map_location=device)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            rng = state["rng"]
            start_epoch = state["epoch"]
    for epoch in range(start_epoch, cfg.epochs):
        metrics = train_epoch(model, data, cfg, optimizer, scheduler, rng, epoch)
        with tempfile.TemporaryDirectory() as d:
            model.save(Path(d) / "model", tokenizer)
            torch.save({"optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "rng": rng, "epoch": epoch + 1},
                       Path(d) / "train_state.pt")
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
