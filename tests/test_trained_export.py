"""The exported model equals the trained one: a tiny student trained for a few rounds by the search's own trial loop
(``fit_student``, outside Ray) on real posts, then its torch model (the trial's ``torch/`` checkpoint), its fp32
ONNX export and its int8 folder (the one the trial exported and measured) are run on the same texts.

Tolerances: fp32 ONNX logits within 1e-4 of torch's (same labels everywhere); int8 labels agree with fp32 on at
least 90 % of the texts (the search records the same share as ``int8_fp32_agreement``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import REAL_DATA

FP32_ATOL = 1e-4
INT8_AGREEMENT = 0.90


@pytest.fixture(scope="module")
def posts(tiny_data):
    """Real RuSentiment posts when the data is here (CI sets RUSENTIMENT_DATA_DIR), else the tiny set."""
    from corpus import load_splits

    splits = load_splits(REAL_DATA or tiny_data, seed=13)
    return splits.train.text.tolist()[:1500], splits.train.label.to_numpy()[:1500], splits.val.text.tolist()[:300], \
        splits.val.label.to_numpy()[:300], splits.labels


def test_trained_students_torch_fp32_onnx_and_int8_answer_alike(e5_dir, posts, tmp_path):
    """The teacher's tokenizer is e5-small's (offline), which reads Russian; the student is a new 1 x 64 encoder
    on its trimmed vocabulary, trained on the posts' gold labels for one epoch."""
    from transformers import AutoModel, AutoTokenizer

    from inference import SentimentClassifier
    from modeling import ClassifierConfig, EncoderClassifier
    from modeling.onnx_export import export_folder
    from spaces.student import StudentConfig
    from trainables.student import FolderReporter, StudentData, fit_student
    from trainables.worker import folder_bytes

    train_x, train_y, val_x, val_y, labels = posts
    torch.manual_seed(0)
    teacher = EncoderClassifier(AutoModel.from_pretrained(e5_dir, add_pooling_layer=False),
                                ClassifierConfig(labels=tuple(labels), pooling="mean", max_length=64)).eval()
    teacher.save(tmp_path / "teacher", AutoTokenizer.from_pretrained(e5_dir))
    data = StudentData(teacher_files=folder_bytes(tmp_path / "teacher"), train_texts=train_x, train_labels=train_y,
                       train_logits=np.eye(len(labels), dtype=np.float32)[train_y] * 4, val_texts=val_x,
                       val_labels=val_y)
    cfg = StudentConfig(layers=1, hidden=64, heads=2, ffn=128, vocab=4000, init="random", epochs=1, evals_per_epoch=3,
                        ptq_rungs=3, ptq_grace=1, threads=1, batch_size=32, max_length=64, lr=2e-3, bench_texts=10)
    fit_student(cfg, data, FolderReporter(tmp_path / "run"))
    rounds = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [1, 2, 3] and rounds[-1]["int8_round"] == 3  # trained, int8 of the end

    checkpoint = tmp_path / "run" / "checkpoint"
    student, tok = EncoderClassifier.load(checkpoint / "torch")
    student.eval()
    fp32 = SentimentClassifier.load(export_folder(student, tok, tmp_path / "fp32", quantize=False))
    int8 = SentimentClassifier.load(checkpoint / "model")  # the trial's own int8 folder
    texts = val_x
    with torch.no_grad():
        ref = np.concatenate([student(**{k: v for k, v in tok(
            [student.config.text_prefix + t for t in texts[i:i + 16]], padding=True, truncation=True,
            max_length=student.config.max_length, return_tensors="pt").items() if k in ("input_ids", "attention_mask")}
        ).numpy() for i in range(0, len(texts), 16)])
    onnx32 = fp32.logits(texts, batch_size=16)
    assert np.abs(ref - onnx32).max() <= FP32_ATOL
    assert (ref.argmax(1) == onnx32.argmax(1)).all()
    agreement = float((int8.logits(texts, batch_size=16).argmax(1) == onnx32.argmax(1)).mean())
    assert agreement >= INT8_AGREEMENT, agreement
    # a trained student, not a constant: it answers more than one class and beats chance on validation
    assert len(set(ref.argmax(1))) > 1
    assert (ref.argmax(1) == val_y).mean() > 1 / len(labels)
