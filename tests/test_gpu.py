"""The teacher's GPU path (fine-tuning with bf16 autocast, saving, cached outputs) on a tiny BERT.
Skipped where torch sees no CUDA device (CI, most machines); run on a lent GPU by hand:
``python -m pytest -q tests/test_gpu.py``. Needs torch, transformers and tokenizers only (no Ray)."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tests.fixtures import tiny_texts

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_teacher_fine_tunes_saves_and_predicts_on_the_gpu(tiny_bert, tmp_path):
    from corpus import LABELS
    from corpus.encode import encode_texts
    from modeling import EncoderClassifier
    from trainables.device import training_device
    from trainables.loop import linear_warmup_decay, predict_logits
    from trainables.teacher import TeacherData, TeacherTrainConfig, build_teacher, param_groups, train_epoch
    from trainables.worker import folder_bytes

    rng = random.Random(0)
    rows = [(i, t) for i, label in enumerate(LABELS) for t in tiny_texts(label, 40, rng)]
    rng.shuffle(rows)
    labels, texts = np.array([r[0] for r in rows]), [r[1] for r in rows]
    cfg = TeacherTrainConfig(epochs=2, batch_size=16, lr=5e-4, pooling="cls")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    enc = encode_texts(texts, tok, cfg.max_length)
    data = TeacherData(folder_bytes(tiny_bert), tok.pad_token_id, enc, labels, enc, labels)
    device = training_device()
    assert device.type == "cuda"
    model, tokenizer = build_teacher(data, cfg)
    model.to(device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr)
    total = 2 * int(np.ceil(len(texts) / cfg.batch_size))
    scheduler = linear_warmup_decay(optimizer, 2, total)
    np_rng = np.random.default_rng(0)
    first = train_epoch(model, data, cfg, optimizer, scheduler, np_rng, 0)
    second = train_epoch(model, data, cfg, optimizer, scheduler, np_rng, 1)
    assert np.isfinite(second["train_loss"]) and second["train_loss"] < first["train_loss"]
    assert next(model.parameters()).is_cuda
    model.save(tmp_path / "model", tokenizer)  # from CUDA tensors
    reloaded, _ = EncoderClassifier.load(tmp_path / "model")
    on_gpu = predict_logits(model, enc, tok.pad_token_id, bf16="off")
    on_cpu = predict_logits(reloaded.eval(), enc, tok.pad_token_id, bf16="off")
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-3, atol=1e-3)
    print(f"GPU {torch.cuda.get_device_name()}: epoch train s {first['epoch_train_s']:.2f} / "
          f"{second['epoch_train_s']:.2f}, val wF1 {second['val_weighted_f1']:.3f}")
