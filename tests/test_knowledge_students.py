"""Students that keep the teacher's knowledge: pruning, the lexical branch, real transfer text, the
random-only validation split (offline, tiny teacher built in code)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from corpus import LABELS, load_splits
from inference.lexical import LexicalSpec, batch_features, features, lexical_logits


@pytest.fixture(scope="module")
def teacher(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    from modeling import ClassifierConfig, EncoderClassifier

    torch.manual_seed(0)
    model = EncoderClassifier(AutoModel.from_pretrained(tiny_bert, add_pooling_layer=False),
                              ClassifierConfig(labels=LABELS, pooling="mean", max_length=64)).eval()
    torch.nn.init.normal_(model.head.weight, std=0.5)
    return model, AutoTokenizer.from_pretrained(tiny_bert)


def _batch(tok, texts):
    enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


@pytest.fixture(scope="module")
def scores(teacher):
    from modeling.prune import importance

    model, tok = teacher
    texts = ["Отлично люблю это", "Ужасно плохо и грустно", "Спасибо поздравляю с праздником", "http vk com"]
    return importance(model, [_batch(tok, texts[:2]), _batch(tok, texts[2:])])


def _cut(teacher, scores, shape, vocab_ids=None):
    from modeling import ClassifierConfig, EncoderClassifier
    from modeling.prune import prune_encoder

    model, tok = teacher
    ids = np.arange(len(tok)) if vocab_ids is None else vocab_ids
    enc, channels = prune_encoder(model.encoder, scores, shape, ids, 64, tok.pad_token_id)
    student = EncoderClassifier(enc, ClassifierConfig(labels=LABELS, pooling="mean", max_length=64)).eval()
    with torch.no_grad():
        student.head.weight.copy_(model.head.weight[:, channels])
        student.head.bias.copy_(model.head.bias)
    return student


def test_importance_has_one_score_per_unit(teacher, scores):
    cfg = teacher[0].encoder.config
    assert scores["channels"].shape == (cfg.hidden_size,)
    assert scores["heads"].shape == (cfg.num_hidden_layers, cfg.num_attention_heads)
    assert scores["ffn"].shape == (cfg.num_hidden_layers, cfg.intermediate_size)
    assert scores["qk"].shape == scores["v"].shape == (cfg.num_hidden_layers, cfg.hidden_size)
    assert all(np.all(v >= 0) and np.any(v > 0) for v in scores.values())


def test_pruned_student_with_nothing_removed_reproduces_the_teacher(teacher, scores):
    from modeling.prune import PruneShape

    model, tok = teacher
    cfg = model.encoder.config
    student = _cut(teacher, scores, PruneShape(cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
                                               cfg.intermediate_size))
    ids, mask = _batch(tok, ["Отлично люблю это 😀", "Ужасно плохо", "спасибо"])
    with torch.no_grad():
        torch.testing.assert_close(student(ids, mask), model(ids, mask), rtol=1e-5, atol=1e-5)


def test_token_level_kd_aligns_student_and_teacher_tokens(teacher, scores):
    """With nothing removed, the student's token states are the teacher's up to the kept-channel order:
    through that permutation as the projection, the token-level loss is zero (ids, tokens and layers align)."""
    import copy

    from modeling.prune import PruneShape, prune_encoder
    from spaces.student import StudentConfig
    from trainables.distill import TokenTeacher, token_loss

    model, tok = teacher
    c = model.encoder.config
    shape = PruneShape(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size)
    enc, channels = prune_encoder(model.encoder, scores, shape, np.arange(len(tok)), 64, tok.pad_token_id)
    cfg = StudentConfig(layers=shape.layers, hidden=shape.hidden, heads=shape.heads, ffn=shape.ffn, init="pruned",
                        token_kd=1.0)
    token_teacher = TokenTeacher(copy.deepcopy(model), tok, tok, cfg, torch.device("cpu"))
    assert token_teacher.mapped == list(range(shape.layers))
    ids, mask = _batch(tok, ["Отлично люблю это 😀", "Ужасно плохо", "спасибо"])
    enc.eval()
    with torch.no_grad():
        student_tokens = enc(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[1:]
        perm = torch.nn.ModuleList(torch.nn.Linear(shape.hidden, shape.hidden, bias=False) for _ in range(shape.layers))
        for p in perm:
            p.weight.zero_()
            p.weight[torch.as_tensor(channels), torch.arange(shape.hidden)] = 1.0  # student channel j -> teacher channels[j]
        loss = token_loss(student_tokens, token_teacher(ids, mask), perm, mask)
    assert loss.item() < 1e-5
    random_proj = torch.nn.ModuleList(torch.nn.Linear(shape.hidden, shape.hidden) for _ in range(shape.layers))
    assert token_loss(student_tokens, token_teacher(ids, mask), random_proj, mask).item() > 0.1


def test_pruned_student_keeps_consistent_shapes_and_exports(teacher, scores, tmp_path):
    from inference import SentimentClassifier
    from modeling.onnx_export import export_folder
    from modeling.prune import PruneShape
    from modeling.vocab import trim_tokenizer

    model, tok = teacher
    keep = np.array(sorted(set(tok.all_special_ids) | set(range(5, min(200, len(tok) - 20)))))  # a trimmed vocabulary
    student = _cut(teacher, scores, PruneShape(layers=2, hidden=156, heads=6, ffn=300), keep)
    enc = student.encoder
    assert enc.config.num_hidden_layers == 2 and len(enc.encoder.layer) == 2
    assert enc.embeddings.word_embeddings.weight.shape == (len(keep), 156)
    att = enc.encoder.layer[0].attention.self
    assert att.query.weight.shape == (156, 156) and att.attention_head_size == 26
    assert enc.encoder.layer[1].intermediate.dense.weight.shape == (300, 156)
    stok = trim_tokenizer(tok, keep)
    ids, mask = _batch(stok, ["Отлично люблю", "плохо"])
    assert student(ids, mask).shape == (2, len(LABELS))
    folder = export_folder(student, stok, tmp_path / "cut", quantize=False)
    runtime = SentimentClassifier.load(folder).logits(["Отлично люблю", "плохо"])
    with torch.no_grad():
        torch.testing.assert_close(torch.as_tensor(runtime), student(ids, mask), rtol=1e-4, atol=1e-4)


def test_pruning_refuses_shapes_the_teacher_cannot_give(teacher, scores):
    from modeling.prune import PruneShape

    with pytest.raises(ValueError, match="head size 52 > the teacher's 26"):
        _cut(teacher, scores, PruneShape(layers=1, hidden=156, heads=3, ffn=100))
    with pytest.raises(ValueError, match="layers=5 \\(teacher has 3\\)"):
        _cut(teacher, scores, PruneShape(layers=5, hidden=156, heads=6, ffn=100))


def test_the_space_offers_pruned_students_only_shapes_the_teacher_gives():
    import optuna

    from modeling.prune import PruneShape
    from spaces.student import StudentConfig, StudentSpace, sample_student
    from trainables.student import student_config

    class Teacher:  # e5-small's shape: 12 layers, 384 wide, 12 heads of 32, FFN 1536
        num_hidden_layers, hidden_size, num_attention_heads, intermediate_size = 12, 384, 12, 1536

    space = StudentSpace(init=("pruned", "random"), teacher_shape=(12, 384, 12, 1536))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        constants = sample_student(trial, space)
        cfg = student_config({**trial.params, **constants}, StudentConfig())
        study.tell(trial, 0.0)
        if cfg.init == "pruned":
            PruneShape(cfg.layers, cfg.hidden, cfg.heads, cfg.ffn).check(Teacher)  # never raises
            seen.add(cfg.hidden)
    assert len(seen) >= 3
    with pytest.raises(ValueError, match="--hidden \\[96\\] cannot be cut from the teacher"):
        StudentSpace(init=("pruned",), hidden=(96, 256), teacher_shape=(12, 384, 6, 1536))
    with pytest.raises(ValueError, match="--max-layers 4: the teacher has 3 layers"):
        StudentSpace(init=("pruned",), layers=(1, 4), teacher_shape=(3, 384, 12, 1536))


def test_lexical_features_are_deterministic_and_case_blind():
    spec = LexicalSpec(buckets=1000)
    a, b = features("Отлично!!! )))", spec), features("ОТЛИЧНО!!! )))", spec)
    assert np.array_equal(a, b) and len(a) > 10 and a.min() >= 0 and a.max() < 1000
    # char_wb 2-5 n-grams of " ok " are " o", "ok", "k ", " ok", "ok ", " ok " = 6; one word: no bigram
    assert len(features("ok", LexicalSpec(buckets=1000, word_bigrams=False))) == 6 + 1
    assert len(features("", spec)) == 0 and len(features("   ", spec)) == 0
    ids, offsets, weights = batch_features(["да", "", "нет нет"], spec)
    assert offsets.tolist()[0] == 0 and len(offsets) == 3 and len(ids) == len(weights)


def test_lexical_branch_exports_and_the_runtime_gives_torchs_logits(teacher, scores, tmp_path):
    from inference import SentimentClassifier
    from modeling import ClassifierConfig, EncoderClassifier
    from modeling.onnx_export import export_folder
    from modeling.prune import PruneShape, prune_encoder

    model, tok = teacher
    enc, _ = prune_encoder(model.encoder, scores, PruneShape(1, 156, 6, 100), np.arange(len(tok)), 64,
                           tok.pad_token_id)
    spec = LexicalSpec(buckets=4096)
    student = EncoderClassifier(enc, ClassifierConfig(labels=LABELS, max_length=64, lexical=spec.to_dict())).eval()
    with torch.no_grad():
        student.lexical.weight.normal_(0, 1.0)
    texts = ["Отлично люблю это 😀", "Ужасно плохо!!!", "спасибо", ""]
    ids, mask = _batch(tok, texts)
    with torch.no_grad():
        full = student(ids, mask, lexical=student.lexical_inputs(texts))
        alone = student(ids, mask)
    assert (full - alone).abs().max() > 0.1  # the branch contributes
    fp32 = SentimentClassifier.load(export_folder(student, tok, tmp_path / "fp32", quantize=False))
    np.testing.assert_allclose(fp32.logits(texts), full.numpy(), rtol=1e-4, atol=1e-4)
    int8 = SentimentClassifier.load(export_folder(student, tok, tmp_path / "int8"))
    assert (tmp_path / "int8" / "lexical.npz").is_file()
    assert np.abs(int8.logits(texts) - full.numpy()).max() < 0.25
    # round trip of the torch folder keeps the table
    student.save(tmp_path / "torch", tok)
    again, _ = EncoderClassifier.load(tmp_path / "torch")
    torch.testing.assert_close(again.lexical.weight, student.lexical.weight)
    table = student.lexical.weight.detach().numpy()
    np.testing.assert_allclose(lexical_logits(table, texts, spec), (full - alone).numpy(), rtol=1e-4, atol=1e-4)


def test_lexical_runtime_imports_no_torch(tmp_path):
    code = ("import sys; from inference.lexical import LexicalSpec, lexical_logits; import numpy as np; "
            "lexical_logits(np.ones((64, 5), np.float32), ['привет'], LexicalSpec(buckets=64)); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_random_only_split_never_puts_a_preselected_post_in_validation(tiny_data):
    s = load_splits(tiny_data, seed=5)
    assert s.val_from == "random" and set(s.val.source) == {"rusentiment_random_posts"}
    preselected = pd.read_csv(tiny_data / "rusentiment_preselected_posts.csv")
    assert len(s.train[s.train.source == "rusentiment_preselected_posts"]) == len(preselected)
    old = load_splits(tiny_data, seed=5, val_from="all")
    assert set(old.val.source) == {"rusentiment_random_posts", "rusentiment_preselected_posts"}
    assert s.describe()["val_from"] == "random"


def test_an_epoch_sees_every_labelled_post_plus_transfer_draws():
    from trainables.student import epoch_batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 30, size=100)
    rows = np.concatenate(epoch_batches(40, 100, 20, lengths, 8, rng))
    assert sorted(rows[rows < 40].tolist()) == list(range(40))  # each labelled post once
    assert (rows >= 40).sum() == 20 and len(set(rows[rows >= 40].tolist())) == 20
    assert len(np.concatenate(epoch_batches(40, 40, 40, lengths, 8, rng))) == 40


def test_real_transfer_text_excludes_evaluated_posts(tmp_path):
    from corpus import DataError
    from corpus.transfer_text import sample_transfer_texts

    path = tmp_path / "t.csv"
    pd.DataFrame({"source": ["a"] * 5 + ["b"] * 5,
                  "text": [f"текст {i}" for i in range(9)] + ["тестовый пост"]}).to_csv(path, index=False)
    texts, summary = sample_transfer_texts(path, 9, 0, exclude={"тестовый пост"})
    assert "тестовый пост" not in texts and summary["excluded"] == 1 and len(set(texts)) == 9
    with pytest.raises(DataError, match="holds only 9 usable texts"):
        sample_transfer_texts(path, 10, 0, exclude={"тестовый пост"})


def test_distill_heads_load_from_a_checkpoint_of_the_older_layout():
    """A trial checkpoint from before the projections were one module (keys projection / layer_proj / token_proj)
    restores into DistillHeads, so --resume of such a search goes on."""
    import torch

    from spaces.student import StudentConfig
    from trainables.distill import DistillHeads

    cfg = StudentConfig(layers=2, hidden=96, heads=3, ffn=192, feature_kd=1.0, hidden_kd=1.0)
    torch.manual_seed(0)
    before = DistillHeads(cfg, 384, 2, 384, None)
    old = {"projection": before.feature.state_dict(), "layer_proj": before.hidden.state_dict(), "token_proj": None}
    after = DistillHeads(cfg, 384, 2, 384, None)
    after.load_state_dict(DistillHeads.from_checkpoint(old))
    for (name, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items()):
        assert torch.equal(a, b), name
    current = after.state_dict()
    assert DistillHeads.from_checkpoint({"heads": current, "projection": None}) is current  # the new layout as is
