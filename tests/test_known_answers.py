"""Known answers for core functions, found by mutation testing (docs/mutation_survivors.md).

Each test here proves an exact behaviour that an earlier mutmut run showed no other fast test pinned:

* n-gram hashing (``inference/lexical.py``: ``features``, ``_mix``, ``_codes``): the bucket ids of fixed
  texts equal those of a slow, pure-Python re-implementation written from the module's docstring (a
  polynomial rolling hash mod 2^64 over code points, a per-kind salt, the splitmix64 finaliser, mod the
  buckets), not values produced by the code under test;
* the Pareto staircase (``analysis/plots.py:front_2d``): hand-computed fronts with ties, unsorted input
  and missing values;
* PTQ (``modeling/onnx_export.py``: ``quantize_int8``, ``quantize_graph``): on a tiny ONNX graph built in
  code, each form has the node types and weight dtypes its name promises and stays close to fp32;
* the runtime (``inference/classifier.py``: ``softmax``, ``clean_text``, ``SentimentClassifier._scores``):
  rows of probabilities summing to 1 and stable on huge logits, lone surrogates replaced, and batching that
  changes nothing (batch vs single calls, truncation marks, top_k order), on a stub session;
* the distillation terms (``trainables/distill.py``: ``kd_loss``, ``fuse_log_probs``, ``feature_loss``,
  ``layer_map``, ``hidden_loss``, ``token_loss``): each docstring's formula written out in numpy;
* the gold expert's runtime (``inference/expert.py``) and fit (``modeling/expert.py``): tf-idf, naive-Bayes ratios
  and scores from their formulas, the fit and its cross-fitting written with scikit-learn directly, the int8 table's
  known answers, the fusion weight's rows, the file's arrays and the config's exact text;
* pruning (``modeling/prune.py``): ``importance`` against a numpy forward of a tiny BERT built in code, the slices
  ``prune_encoder`` takes for hand-set scores, ``_top``'s ties, every message of ``PruneShape.check``;
* the class bias (``modeling/calibration.py``): the optimum's gradient condition, the held-out folds written out,
  the config's exact text.
"""
from __future__ import annotations

import math
from pathlib import Path
import re

import numpy as np
import pandas as pd
import pytest

from analysis.plots import front_2d
from inference.lexical import LexicalSpec, features

# ----------------------------------------------------------------------------------------------------------
# n-gram hashing: a slow pure-Python reference, from the docstring of inference/lexical.py
# ----------------------------------------------------------------------------------------------------------
M64 = (1 << 64) - 1
P = 0x100000001B3            # the rolling hash's odd multiplier
GOLDEN = 0x9E3779B97F4A7C15  # salt of kind t: t * GOLDEN mod 2^64 (t = n for char n-grams, 101 words, 102 bigrams)
MAX_WORD = 64                # a word hashes its first 64 code points


def _salt(tag: int) -> int:
    return (tag * GOLDEN) & M64


def _poly(codes) -> int:
    """sum_k codes[k] * P^k mod 2^64: the first code point is the lowest power."""
    return sum(c * pow(P, k, 1 << 64) for k, c in enumerate(codes)) & M64


def _splitmix64(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def reference_features(text: str, spec: LexicalSpec) -> list[int]:
    """Bucket ids of char n-grams (char_min..char_max within each space-padded whitespace word) and of word uni-
    and bigrams (``\\w+``) of the lower-cased text, as a sorted multiset."""
    t = text.lower()
    raw = []
    for word in t.split():
        padded = [ord(ch) for ch in f" {word} "]
        for n in range(spec.char_min, spec.char_max + 1):
            for j in range(len(padded) - n + 1):
                raw.append(_poly(padded[j:j + n]) ^ _salt(n))
    hashes = [_poly([ord(ch) for ch in w[:MAX_WORD]]) for w in re.findall(r"\w+", t)]
    raw += [h ^ _salt(101) for h in hashes]
    if spec.word_bigrams:
        raw += [((a * P + b) & M64) ^ _salt(102) for a, b in zip(hashes, hashes[1:])]
    return sorted(_splitmix64(x) % spec.buckets for x in raw)


TEXTS = [
    "ok",
    "Привет, МИР!!! как дела?",
    "a",                                   # shorter padded word than most n: the n-gram loop stops early
    "Ёлка и ЁЖ — 😀 日本語 x",
    "ab cd",
    "  много   пробелов\tи\nстрок  ",
    "Я",
    "x" * 70 + " " + "й" * 65 + " хвост",  # words past 64 code points hash their first 64
    "слово слово слово",                   # repeats are kept
    "hello_world 42 3.14",
]
SPECS = [
    LexicalSpec(),
    LexicalSpec(buckets=1_000_003, char_min=1, char_max=8),
    LexicalSpec(buckets=97, char_min=3, char_max=3, word_bigrams=False),
    LexicalSpec(buckets=2, char_min=1, char_max=1),
    LexicalSpec(buckets=(1 << 31) - 1, char_min=4, char_max=6),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.buckets}-{s.char_min}-{s.char_max}-{s.word_bigrams}")
def test_lexical_bucket_ids_equal_a_pure_python_reference(spec):
    for text in TEXTS:
        got = features(text, spec)
        assert got.dtype == np.int64, text
        assert sorted(got.tolist()) == reference_features(text, spec), (text, spec)


def test_lexical_known_bucket_ids_of_ok():
    """Hand-listed n-grams of "ok" (padded " ok "): 2-grams " o", "ok", "k "; 3-grams " ok", "ok "; the 4-gram
    " ok "; the word "ok"; no bigram. Each id checked against the reference, one n-gram at a time."""
    spec = LexicalSpec(buckets=1 << 20, char_min=2, char_max=4)
    grams = [(" o", 2), ("ok", 2), ("k ", 2), (" ok", 3), ("ok ", 3), (" ok ", 4)]
    want = [_splitmix64(_poly([ord(c) for c in g]) ^ _salt(n)) % spec.buckets for g, n in grams]
    want.append(_splitmix64(_poly([ord("o"), ord("k")]) ^ _salt(101)) % spec.buckets)
    assert sorted(features("OK", spec).tolist()) == sorted(want)
    assert len(set(want)) == 7  # seven different ids: a dropped or duplicated n-gram would show


def test_lexical_features_of_empty_text_are_an_empty_int64_array():
    for text in ("", " \t\n", "\u3000"):
        out = features(text, LexicalSpec())
        assert out.dtype == np.int64 and out.shape == (0,)


def test_lexical_text_without_word_characters_has_only_char_ngrams():
    """"!!" has no \\w word: its features are exactly its char n-grams."""
    spec = LexicalSpec(buckets=1 << 16)
    got = features("!!", spec)
    assert sorted(got.tolist()) == reference_features("!!", spec)
    assert len(got) == 3 + 2 + 1  # " !!" padded: 3 two-grams, 2 three-grams, 1 four-gram, none of 5


# ----------------------------------------------------------------------------------------------------------
# the Pareto staircase: analysis/plots.py:front_2d (x down, y up)
# ----------------------------------------------------------------------------------------------------------
def _front(df):
    f = front_2d(df, "x", "y")
    return list(zip(f.x.tolist(), f.y.tolist()))


def test_front_2d_of_unsorted_input_with_ties_in_x_keeps_the_best_y_of_each_x():
    # sorted by x, then y down: (1, .7) (1, .5) (2, .6) (2, .6) (3, .9) (4, .9): best so far .7, .7, .7, .7, .9, .9
    df = pd.DataFrame({"x": [3.0, 1.0, 2.0, 1.0, 2.0, 4.0], "y": [0.9, 0.5, 0.6, 0.7, 0.6, 0.9]})
    assert _front(df) == [(1.0, 0.7), (3.0, 0.9)]


def test_front_2d_a_point_equal_to_the_best_y_so_far_is_dominated():
    # (2, 5) ties (1, 5) on y at a larger x: dominated, left out; a duplicate point enters once
    df = pd.DataFrame({"x": [2.0, 1.0, 1.0, 3.0], "y": [5.0, 5.0, 5.0, 6.0]})
    assert _front(df) == [(1.0, 5.0), (3.0, 6.0)]


def test_front_2d_with_negative_y_and_x_decreasing_in_the_frame():
    # every y below zero: the first point (the smallest x) always enters
    df = pd.DataFrame({"x": [5.0, 4.0, 3.0, 2.0, 1.0], "y": [-1.0, -2.0, -1.5, -3.0, -4.0]})
    assert _front(df) == [(1.0, -4.0), (2.0, -3.0), (3.0, -1.5), (5.0, -1.0)]


def test_front_2d_keeps_the_rows_index_and_columns_and_drops_rows_missing_x_or_y():
    # a missing value in another column (here "test_f1") does not drop the row
    df = pd.DataFrame({"x": [np.nan, 1.0, 2.0, 3.0, 0.5], "y": [9.0, 1.0, 2.0, np.nan, np.nan],
                       "name": ["nan-x", "a", "b", "nan-y", "nan-y-small-x"],
                       "test_f1": [0.1, np.nan, 0.3, 0.4, 0.5]}, index=[10, 11, 12, 13, 14])
    f = front_2d(df, "x", "y")
    assert f.index.tolist() == [11, 12] and f.name.tolist() == ["a", "b"]
    assert list(f.columns) == ["x", "y", "name", "test_f1"] and np.isnan(f.test_f1.iloc[0])


def test_front_2d_of_no_rows_is_empty():
    df = pd.DataFrame({"x": [np.nan], "y": [1.0]})
    assert len(front_2d(df, "x", "y")) == 0
    assert len(front_2d(df.iloc[:0], "x", "y")) == 0


# ----------------------------------------------------------------------------------------------------------
# PTQ: modeling/onnx_export.py quantize_int8 / quantize_graph on a tiny graph built in code
# ----------------------------------------------------------------------------------------------------------
V, H, C = 40, 64, 5  # vocabulary, width (two 4-bit blocks of 32), classes


def _tiny_graph(path, seed=0):
    """logits = head(BiasGelu(dense(tanh(pooler(conv(sum over unmasked tokens of emb[input_ids])))))): a Gather (the
    embedding table), a 1x1 Conv (an operator INT8_OPS leaves alone), the pooler Gemm, a weight MatMul, a
    com.microsoft BiasGelu (a fused node whose output ONNX shape inference cannot type, as in a fused export) and
    the head, a Gemm whose output is ``logits``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    arrays = {"emb": rng.normal(0, 1, (V, H)), "wc": rng.normal(0, 0.2, (H, H, 1)), "w0": rng.normal(0, 0.3, (H, H)),
              "b0": rng.normal(0, 0.1, H), "w1": rng.normal(0, 0.2, (H, H)), "bg": rng.normal(0, 0.1, H),
              "w2": rng.normal(0, 0.2, (H, C)), "b2": rng.normal(0, 0.1, C)}
    inits = [numpy_helper.from_array(a.astype(np.float32), name) for name, a in arrays.items()]
    inits += [numpy_helper.from_array(np.array([-1], np.int64), "ax_last"),
              numpy_helper.from_array(np.array([1], np.int64), "ax_seq")]
    node = helper.make_node
    nodes = [node("Gather", ["emb", "input_ids"], ["e"], name="embed"),
             node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT, name="cast"),
             node("Unsqueeze", ["mf", "ax_last"], ["m3"], name="unsqueeze"),
             node("Mul", ["e", "m3"], ["em"], name="mask"),
             node("ReduceSum", ["em", "ax_seq"], ["pooled"], keepdims=0, name="pool"),
             node("Unsqueeze", ["pooled", "ax_last"], ["p3"], name="to_conv"),
             node("Conv", ["p3", "wc"], ["c3"], name="conv"),
             node("Squeeze", ["c3", "ax_last"], ["c"], name="from_conv"),
             node("Gemm", ["c", "w0", "b0"], ["p"], name="pooler"),
             node("Tanh", ["p"], ["pt"], name="tanh"),
             node("MatMul", ["pt", "w1"], ["h"], name="dense"),
             node("BiasGelu", ["h", "bg"], ["hg"], name="gelu", domain="com.microsoft"),
             node("Gemm", ["hg", "w2", "b2"], ["logits"], name="head")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"]),
                                              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", C])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _inputs():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, V, (8, 6)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 3:] = 0
    return ids, mask


def _calibration():
    ids, mask = _inputs()
    return [{"input_ids": ids[i:i + 4], "attention_mask": mask[i:i + 4]} for i in (0, 4)]


def _logits(path):
    import onnxruntime as ort

    ids, mask = _inputs()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]


def _graph(path):
    """(op types, {initializer: array}, {node name: node}) of a saved graph."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    return ([n.op_type for n in g.node], {i.name: numpy_helper.to_array(i) for i in g.initializer},
            {n.name: n for n in g.node})


def _float_weight_matmuls(ops_inits_nodes):
    _, inits, nodes = ops_inits_nodes
    return [n.name for n in nodes.values() if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1
            and n.input[1] in inits and inits[n.input[1]].dtype == np.float32]


def _assert_close_to_fp32(got, want, share):
    """Each logit within ``share`` of the fp32 logits' largest magnitude; and the graph did compute (not all 0)."""
    assert got.shape == want.shape and np.abs(got).max() > 0.5 * np.abs(want).max()
    assert np.abs(got - want).max() <= share * np.abs(want).max(), np.abs(got - want).max()


@pytest.fixture
def src(tmp_path, monkeypatch):
    """The tiny fp32 graph, in a fresh working folder (so no file a run leaves in the current folder is read)."""
    monkeypatch.chdir(tmp_path)
    return _tiny_graph(tmp_path / "src.onnx")


def test_quantize_int8_makes_every_int8_op_weight_per_tensor_int8_and_leaves_other_ops(src, tmp_path):
    from modeling.onnx_export import quantize_int8

    assert quantize_int8(src, tmp_path / "int8.onnx") == tmp_path / "int8.onnx"
    g = _graph(tmp_path / "int8.onnx")
    ops, inits, _ = g
    assert not _float_weight_matmuls(g) and ops.count("MatMulInteger") == 3 and "DynamicQuantizeLinear" in ops
    assert "MatMul" not in ops and "Gemm" not in ops and "BiasGelu" in ops
    assert all(inits[f"{w}_quantized"].dtype == np.int8 for w in ("w0", "w1", "w2"))  # QInt8 weights
    assert all(inits[f"{w}_scale"].size == 1 for w in ("w0", "w1", "w2"))  # per tensor, not per channel
    assert inits["emb_quantized"].shape == (V, H) and "emb" not in inits  # the Gather's table too
    assert "Conv" in ops and "ConvInteger" not in ops and inits["wc"].dtype == np.float32  # not an INT8_OPS operator
    _assert_close_to_fp32(_logits(tmp_path / "int8.onnx"), _logits(src), 0.08)


def test_quantize_graph_int8_is_quantize_int8(src, tmp_path):
    from modeling.onnx_export import quantize_graph, quantize_int8

    assert quantize_graph(src, tmp_path / "a.onnx", "int8") == tmp_path / "a.onnx"
    quantize_int8(src, tmp_path / "b.onnx")
    a, b = _graph(tmp_path / "a.onnx"), _graph(tmp_path / "b.onnx")
    assert a[0] == b[0] and a[1].keys() == b[1].keys()
    assert all(np.array_equal(a[1][k], b[1][k]) for k in a[1])


def test_quantize_graph_fp32_copies_the_graph_byte_for_byte(src, tmp_path):
    from modeling.onnx_export import quantize_graph

    assert quantize_graph(src, tmp_path / "fp32.onnx", "fp32") == tmp_path / "fp32.onnx"
    assert (tmp_path / "fp32.onnx").read_bytes() == src.read_bytes()


def test_quantize_graph_per_channel_has_one_int8_scale_per_output_channel(src, tmp_path):
    from modeling.onnx_export import quantize_graph

    assert quantize_graph(src, tmp_path / "pc.onnx", "int8-per-channel") == tmp_path / "pc.onnx"
    g = _graph(tmp_path / "pc.onnx")
    ops, inits, _ = g
    assert not _float_weight_matmuls(g) and ops.count("MatMulInteger") == 3
    assert all(inits[f"{w}_quantized"].dtype == np.int8 for w in ("w0", "w1", "w2"))
    assert inits["w0_scale"].shape == (H,) and inits["w1_scale"].shape == (H,) and inits["w2_scale"].shape == (C,)
    assert inits["emb_quantized"].shape == (V, H) and "emb" not in inits
    assert "ConvInteger" not in ops and inits["wc"].dtype == np.float32  # INT8_OPS only
    _assert_close_to_fp32(_logits(tmp_path / "pc.onnx"), _logits(src), 0.08)


def test_quantize_graph_static_is_qdq_per_channel_with_the_head_in_fp32(src, tmp_path):
    from modeling.onnx_export import quantize_graph

    assert quantize_graph(src, tmp_path / "static.onnx", "int8-static", _calibration()) == tmp_path / "static.onnx"
    g = _graph(tmp_path / "static.onnx")
    ops, inits, nodes = g
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(ops) and "MatMulInteger" not in ops
    assert _float_weight_matmuls(g) == ["head"] and nodes["head"].op_type == "Gemm"  # the head stays fp32
    for w in ("w0", "w1"):  # the pooler Gemm and the MatMul: QInt8, per channel
        assert inits[f"{w}_quantized"].dtype == np.int8 and inits[f"{w}_scale"].shape == (H,), w
    assert inits["h_zero_point"].dtype == np.uint8  # activations QUInt8
    assert inits["emb"].dtype == np.float32 and inits["wc"].dtype == np.float32  # MatMul and Gemm only
    _assert_close_to_fp32(_logits(tmp_path / "static.onnx"), _logits(src), 0.08)


def test_quantize_graph_static_calibration_sets_the_activation_ranges(src, tmp_path):
    from modeling.onnx_export import quantize_graph

    calibration = _calibration()
    quantize_graph(src, tmp_path / "all.onnx", "int8-static", calibration)
    one = [{"input_ids": b["input_ids"], "attention_mask": np.eye(*b["attention_mask"].shape, dtype=np.int64)}
           for b in calibration]  # one token per post: pooled vectors (sums over tokens) of a smaller range
    quantize_graph(src, tmp_path / "one.onnx", "int8-static", one)
    full, small = _graph(tmp_path / "all.onnx")[1], _graph(tmp_path / "one.onnx")[1]
    assert float(full["c_scale"]) > 1.5 * float(small["c_scale"]) > 0


def test_quantize_graph_int4_has_symmetric_4_bit_blocks_of_32_and_int8_embeddings(src, tmp_path):
    from modeling.onnx_export import quantize_graph

    assert quantize_graph(src, tmp_path / "int4.onnx", "int4") == tmp_path / "int4.onnx"
    g = _graph(tmp_path / "int4.onnx")
    ops, inits, nodes = g
    assert ops.count("MatMulNBits") == 1 and "MatMulInteger" not in ops
    nbits = nodes["dense_Q4"]
    attrs = {a.name: a.i for a in nbits.attribute}
    assert attrs["bits"] == 4 and attrs["block_size"] == 32 and (attrs["K"], attrs["N"]) == (H, H)
    assert len(nbits.input) == 3 and not any("zero_points" in n for n in inits)  # symmetric: no zero points
    assert inits["emb_quantized"].dtype == np.uint8 and "emb" not in inits  # the embeddings: dynamic int8
    assert _float_weight_matmuls(g) == ["pooler_MatMul", "head_MatMul"]  # the Gemms stay fp32 (MatMul + Add)
    assert inits["wc"].dtype == np.float32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int4.onnx", "src.onnx"]  # the 4-bit step's file removed
    _assert_close_to_fp32(_logits(tmp_path / "int4.onnx"), _logits(src), 0.25)


def test_quantize_graph_refuses_an_unknown_form_and_static_without_calibration(src, tmp_path):
    from modeling.onnx_export import quantize_graph

    with pytest.raises(ValueError) as e:
        quantize_graph(src, tmp_path / "x.onnx", "int3")
    assert str(e.value) == "quantization 'int3': choose one of int8, fp32, int8-per-channel, int8-static, int4"
    with pytest.raises(ValueError) as e:
        quantize_graph(src, tmp_path / "x.onnx", "int8-static")
    assert str(e.value) == "quantization 'int8-static' needs calibration posts"
    assert not (tmp_path / "x.onnx").exists()


# ----------------------------------------------------------------------------------------------------------
# the runtime: inference/classifier.py softmax, clean_text, SentimentClassifier._scores (and __call__ on it)
# ----------------------------------------------------------------------------------------------------------
LABELS = ["negative", "neutral", "positive", "skip", "speech"]
VOCAB = ["[PAD]", "[UNK]", "хорошо", "плохо", "день", "ночь", "очень", "и", "не", "да"]


class _BagSession:
    """An ONNX session stand-in: logits = the sum of a fixed row per unmasked token (float64 inside, float32 out),
    so padding a text into a batch must not change its logits."""

    def __init__(self, seed=0):
        self.rows = np.random.default_rng(seed).normal(0, 1.5, (len(VOCAB), len(LABELS)))
        self.calls = []

    def run(self, names, feeds):
        assert names == ["logits"] and set(feeds) == {"input_ids", "attention_mask"}
        ids, mask = feeds["input_ids"], feeds["attention_mask"]
        assert ids.dtype == np.int64 and mask.dtype == np.int64 and ids.shape == mask.shape
        self.calls.append(ids.shape)
        return [(self.rows[ids] * mask[..., None]).sum(1).astype(np.float32)]


def _classifier(max_length=6, seed=0, lexical=None, expert=None, expert_weight=0.0):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from inference.classifier import SentimentClassifier

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.no_padding()
    tok.enable_truncation(max_length)
    clf = SentimentClassifier(_BagSession(seed), tok, {"labels": LABELS, "max_length": max_length, "pad_id": 0},
                              path=None)
    clf.lexical, clf.expert, clf.expert_weight = lexical, expert, expert_weight
    return clf


def _want_logits(clf, text):
    """The stub's logits of one text, computed here from its token ids (no batch, no padding)."""
    ids = clf.tokenizer.encode(text).ids
    return clf.session.rows[ids].sum(0)


TEXTS_RT = ["хорошо хорошо день", "плохо", "", "очень очень очень очень очень очень очень плохо", "да и не ночь",
            "незнакомое слово", "день", "хорошо\ud800 день", "ночь ночь", "не не"]


def test_softmax_rows_sum_to_one_and_equal_the_formula():
    from inference.classifier import softmax

    x = np.array([[0.0, 1.0, 2.0], [3.0, 3.0, 3.0], [-1.0, 0.0, -2.0]])
    e = np.exp(x)
    np.testing.assert_allclose(softmax(x), e / e.sum(1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(softmax(x).sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(softmax(np.array([0.0, math.log(3.0)])), [0.25, 0.75], rtol=1e-12)  # 1-D: the last axis


def test_softmax_is_stable_on_huge_logits_row_by_row():
    from inference.classifier import softmax

    with np.errstate(over="raise", divide="raise", invalid="raise"):  # no overflow, no 0/0
        p = softmax(np.array([[1000.0, 1000.0 + math.log(3.0), -1e300], [-5000.0, -5000.0, -5000.0 - math.log(2.0)]]))
    np.testing.assert_allclose(p, [[0.25, 0.75, 0.0], [0.4, 0.4, 0.2]], rtol=1e-12, atol=1e-300)


def test_clean_text_replaces_lone_surrogates_only():
    """A lone surrogate becomes U+FFFD, one for each of the three bytes ``surrogatepass`` writes for it (a surrogate
    pair inside a str is two lone halves); text that UTF-8 can encode comes back as it is."""
    from inference.classifier import clean_text

    for ok in ("", "привет", "😀 日本語", "a\u0000b"):
        assert clean_text(ok) == ok
    assert clean_text("a\ud800b") == "a" + "\ufffd" * 3 + "b"
    assert clean_text("\udfff") == "\ufffd" * 3
    assert clean_text("x\ud83d\ude00y") == "x" + "\ufffd" * 6 + "y"
    assert clean_text("ok😀\udc80") == "ok😀" + "\ufffd" * 3
    clean_text("a\ud800b").encode("utf-8")  # what comes out always encodes


def test_scores_equal_the_logits_of_each_text_alone_whatever_the_batch_size():
    clf = _classifier()
    want = np.stack([_want_logits(clf, t.replace("\ud800", "\ufffd" * 3)) for t in TEXTS_RT])
    for batch_size in (1, 2, 3, 4, 10, 11, 100):
        truncated = []
        got = clf.logits(TEXTS_RT, batch_size=batch_size, truncated=truncated)
        assert got.shape == (len(TEXTS_RT), len(LABELS)) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert truncated == [False, False, False, True, False, False, False, False, False, False], batch_size
    calls = clf.session.calls
    assert calls[:10] == [(1, n) for n in (3, 1, 0, 6, 4, 2, 1, 3, 2, 2)]  # batch 1: one text a call, unpadded
    assert calls[10:15] == [(2, 3), (2, 6), (2, 4), (2, 3), (2, 2)]        # batch 2: padded to the longer


def test_scores_of_no_texts_is_an_empty_float32_matrix():
    clf = _classifier()
    out = clf.logits([])
    assert out.shape == (0, len(LABELS)) and out.dtype == np.float32 and clf.session.calls == []


def test_scores_refuse_a_batch_size_below_one():
    clf = _classifier()
    for bad in (0, -3):
        with pytest.raises(ValueError) as e:
            clf.logits(["да"], batch_size=bad)
        assert str(e.value) == f"batch_size must be >= 1, got {bad}"


def test_scores_log_progress_at_each_tenth_of_a_large_call(caplog):
    """100 texts, batch 4: step 10, so a line where a batch start crosses a multiple of 10."""
    import logging

    clf = _classifier()
    with caplog.at_level(logging.INFO, logger="inference.classifier"):
        clf.logits(["да"] * 100, batch_size=4, progress=True)
    got = [r.getMessage() for r in caplog.records if r.name == "inference.classifier"]
    assert got == [f"classified {i} of 100 texts" for i in (12, 20, 32, 40, 52, 60, 72, 80, 92)]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="inference.classifier"):
        clf.logits(["да"] * 105, batch_size=4, progress=True)  # 105 // 10: the step stays 10, not 10.5
    got = [r.getMessage() for r in caplog.records if r.name == "inference.classifier"]
    assert got == [f"classified {i} of 105 texts" for i in (12, 20, 32, 40, 52, 60, 72, 80, 92, 100)]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="inference.classifier"):
        clf.logits(["да"] * 100, batch_size=4)  # progress off: silent
        clf.student_logits(["да"] * 100, batch_size=4)  # never reports progress
        clf.logits(["да"] * 5, batch_size=30, progress=True)  # one batch: nothing to report
    assert [r for r in caplog.records if r.name == "inference.classifier"] == []



def test_call_marks_only_truncated_texts_and_top_k_is_sorted_by_probability():
    clf = _classifier()
    texts = ["хорошо день", "очень " * 9 + "плохо", "ночь"]
    z = np.stack([_want_logits(clf, t) for t in texts])
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    for batch_size in (1, 2, 32):
        out = clf(texts, batch_size=batch_size)
        assert [r.get("truncated", False) for r in out] == [False, True, False]
        assert [r["label"] for r in out] == [LABELS[j] for j in p.argmax(1)]
        np.testing.assert_allclose([r["score"] for r in out], p.max(1), rtol=1e-5)
        top = clf(texts, top_k=3, batch_size=batch_size)
        for row, probs in zip(top, p):
            order = sorted(range(len(LABELS)), key=lambda j: -probs[j])[:3]
            assert [r["label"] for r in row] == [LABELS[j] for j in order]
            np.testing.assert_allclose([r["score"] for r in row], probs[order], rtol=1e-5)
    assert clf(texts[1]) == clf([texts[1]])[0] and clf(texts[1])["truncated"] is True


def _lexical(spec, seed):
    return np.random.default_rng(seed).normal(0, 1, (spec.buckets, len(LABELS))).astype(np.float32)


def test_scores_add_the_lexical_branch_sum_over_sqrt_count_of_each_text():
    """Known answer from the reference hashing: logits + sum(table[ids]) / sqrt(len(ids)) (times the int8 scale)."""
    spec = LexicalSpec(buckets=512, char_min=2, char_max=3)
    table = _lexical(spec, 3)
    scale = np.linspace(0.5, 1.5, len(LABELS)).astype(np.float32)
    texts = ["хорошо день", "", "плохо плохо ночь", "да"]
    for sc in (None, scale):
        clf = _classifier(lexical=(table, sc, spec))
        base = np.stack([_want_logits(clf, t) for t in texts])
        extra = np.zeros_like(base)
        for i, t in enumerate(texts):
            ids = reference_features(t, spec)
            if ids:
                extra[i] = table[ids].astype(np.float64).sum(0) / math.sqrt(len(ids)) * (1 if sc is None else sc)
        for batch_size in (1, 3):
            np.testing.assert_allclose(clf.logits(texts, batch_size=batch_size), base + extra, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(clf.student_logits(texts, batch_size=batch_size), base + extra, rtol=1e-5,
                                       atol=1e-5)


def _expert(spec, seed):
    from inference.expert import GoldExpert

    rng = np.random.default_rng(seed)
    k = len(LABELS)
    return GoldExpert(spec=spec, table=rng.normal(0, 1, (spec.buckets, k)).astype(np.float32), scale=None,
                      idf=rng.uniform(1, 3, spec.buckets).astype(np.float32), bias=rng.normal(0, 0.1, k),
                      calib=np.eye(k) * 2.0, calib_bias=np.zeros(k))


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("same_spec", [True, False], ids=["expert-spec-is-lexical-spec", "expert-spec-differs"])
def test_scores_fuse_the_expert_with_its_own_ngrams(same_spec):
    """(1 - w) log_softmax(student + lexical) + w log p_expert, the expert reading its own spec's n-grams, whether or
    not it equals the lexical branch's (the runtime reuses the branch's n-grams only when they are the same)."""
    lex_spec = LexicalSpec(buckets=256, char_min=2, char_max=4)
    exp_spec = lex_spec if same_spec else LexicalSpec(buckets=300, char_min=1, char_max=2, word_bigrams=False)
    table, expert = _lexical(lex_spec, 4), _expert(exp_spec, 5)
    texts = ["хорошо день", "плохо плохо ночь", "", "да и нет"]
    clf = _classifier(lexical=(table, None, lex_spec), expert=expert, expert_weight=0.3)
    assert clf.fused
    student = np.stack([_want_logits(clf, t) for t in texts])
    for i, t in enumerate(texts):
        ids = reference_features(t, lex_spec)
        if ids:
            student[i] += table[ids].astype(np.float64).sum(0) / math.sqrt(len(ids))
    expert_lp = expert.log_probs_of([np.array(reference_features(t, exp_spec), np.int64) for t in texts])
    want = 0.7 * _log_softmax(student) + 0.3 * expert_lp
    for batch_size in (1, 4):
        np.testing.assert_allclose(clf.logits(texts, batch_size=batch_size), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(clf.student_logits(texts, batch_size=batch_size), student, rtol=1e-5, atol=1e-5)


def test_scores_fuse_an_expert_without_a_lexical_branch():
    spec = LexicalSpec(buckets=128, char_min=2, char_max=3)
    expert = _expert(spec, 6)
    texts = ["хорошо", "плохо день"]
    clf = _classifier(expert=expert, expert_weight=0.5)
    student = np.stack([_want_logits(clf, t) for t in texts])
    expert_lp = expert.log_probs_of([np.array(reference_features(t, spec), np.int64) for t in texts])
    np.testing.assert_allclose(clf.logits(texts), 0.5 * _log_softmax(student) + 0.5 * expert_lp, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(clf.student_logits(texts), student, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# the distillation terms: trainables/distill.py kd_loss, fuse_log_probs, feature_loss, layer_map, hidden_loss,
# token_loss; every reference below is the docstring's formula written out in numpy (float64)
# ----------------------------------------------------------------------------------------------------------
def _np_log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_kd(s, t, y, alpha, temp):
    """alpha T^2 KL(softmax(t/T) || softmax(s/T)) (summed over classes, averaged over rows) + (1 - alpha) CE(s, y)
    over the rows with y >= 0 (no CE term when alpha is 1 or no row is labelled)."""
    pt = np.exp(_np_log_softmax(t / temp))
    kl = (pt * (np.log(pt) - _np_log_softmax(s / temp))).sum(1).mean() * temp ** 2
    keep = y >= 0
    if alpha == 1 or not keep.any():
        return alpha * kl
    ce = -_np_log_softmax(s[keep])[np.arange(keep.sum()), y[keep]].mean()
    return alpha * kl + (1 - alpha) * ce


def _np_cos(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _linear(n_in, n_out, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(n_in, n_out)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n_out, n_in, generator=g))
        lin.bias.copy_(torch.randn(n_out, generator=g))
    return lin.requires_grad_(False)


def _np_linear(lin, x):
    return np.asarray(x, np.float64) @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()


KD_S = np.array([[2.0, -1.0, 0.5, 0.0, 1.0], [0.0, 0.3, -2.0, 1.5, 0.2], [1.0, 1.0, 1.0, -1.0, 3.0],
                 [-0.5, 2.5, 0.0, 0.7, -1.2]])
KD_T = np.array([[1.0, 0.0, 0.0, -1.0, 2.0], [0.5, -0.5, -1.0, 2.0, 0.0], [0.0, 2.0, 1.0, 0.0, 1.0],
                 [1.0, 1.0, -2.0, 0.0, 0.0]])


@pytest.mark.parametrize("labels", [[0, 3, -1, 4], [-1, -1, -1, -1], [2, 0, 1, 0]], ids=["mixed", "none", "all"])
@pytest.mark.parametrize("alpha,temp", [(0.0, 1.0), (0.3, 2.5), (0.7, 0.5), (1.0, 3.0)])
def test_kd_loss_equals_its_formula_written_out(labels, alpha, temp):
    import torch

    from trainables.distill import kd_loss

    y = np.array(labels)
    got = kd_loss(torch.tensor(KD_S, dtype=torch.float64), torch.tensor(KD_T, dtype=torch.float64),
                  torch.tensor(y), alpha, temp)
    assert got.dim() == 0
    assert float(got) == pytest.approx(_np_kd(KD_S, KD_T, y, alpha, temp), rel=1e-10, abs=1e-12)


def test_kd_loss_known_answers():
    """A student equal to its teacher has no soft loss; uniform logits cost log 5 per labelled row."""
    import torch

    from trainables.distill import kd_loss

    s = torch.tensor(KD_S)
    assert float(kd_loss(s, s.clone(), torch.tensor([-1, -1, -1, -1]), 0.6, 2.0)) == pytest.approx(0.0, abs=1e-12)
    flat = torch.zeros(3, 5, dtype=torch.float64)
    assert float(kd_loss(flat, flat, torch.tensor([0, 4, -1]), 0.0, 4.0)) == pytest.approx(math.log(5), rel=1e-12)
    assert float(kd_loss(flat, flat, torch.tensor([0, 4, -1]), 0.25, 4.0)) == pytest.approx(0.75 * math.log(5))


def test_fuse_log_probs_is_the_runtimes_fusion():
    import torch

    from inference.expert import fuse
    from trainables.distill import fuse_log_probs

    e = _np_log_softmax(KD_T)
    for w in (0.0, 0.25, 1.0):
        got = fuse_log_probs(torch.tensor(KD_S), torch.tensor(e), w).numpy()
        want = (1 - w) * _np_log_softmax(KD_S) + w * e
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fuse(KD_S, e, w), want, rtol=1e-5, atol=1e-5)


def test_feature_loss_is_one_minus_the_mean_cosine_of_the_projected_features():
    import torch

    from trainables.distill import feature_loss

    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(3, 4)), rng.normal(size=(3, 6))
    proj = _linear(4, 6, 0)
    want = (1 - _np_cos(_np_linear(proj, s), t)).mean()
    got = feature_loss(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float16), proj)
    assert got.dtype == torch.float32 and float(got) == pytest.approx(want, rel=1e-3)
    got = feature_loss(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32), proj)
    assert float(got) == pytest.approx(want, rel=1e-5)
    t_same = _np_linear(proj, s) * np.array([[2.0], [0.5], [3.0]])  # the same directions: no loss
    assert float(feature_loss(torch.tensor(s, dtype=torch.float32), torch.tensor(t_same), proj)) == pytest.approx(
        0.0, abs=1e-6)


def test_layer_map_known_answers():
    from trainables.distill import layer_map

    assert layer_map(3, 12) == [3, 7, 11]
    assert layer_map(4, 6) == [1, 2, 3, 5]       # round half to even: round(1.5) = 2, round(4.5) = 4
    assert layer_map(2, 3) == [1, 2]
    assert layer_map(1, 5) == [4]
    assert layer_map(4, 4) == [0, 1, 2, 3]


def test_hidden_loss_is_the_mean_over_layers_and_rows_of_one_minus_cosine():
    import torch

    from trainables.distill import hidden_loss

    rng = np.random.default_rng(2)
    s, t = rng.normal(size=(3, 2, 4)), rng.normal(size=(3, 2, 5))
    projs = [_linear(4, 5, 1), _linear(4, 5, 2)]
    want = np.mean([(1 - _np_cos(_np_linear(p, s[:, i]), t[:, i])) for i, p in enumerate(projs)])
    got = hidden_loss(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float16), projs)
    assert got.dtype == torch.float32 and float(got) == pytest.approx(want, rel=1e-3)
    # per layer: layer 0's loss with layer 1's projection swapped in differs (each layer its own projection)
    swapped = hidden_loss(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32), projs[::-1])
    assert float(swapped) != pytest.approx(want, rel=1e-3)


def test_token_loss_is_the_mean_over_layers_of_the_masked_token_mean():
    import torch

    from trainables.distill import token_loss

    rng = np.random.default_rng(3)
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]])
    s = [rng.normal(size=(2, 4, 3)) for _ in range(2)]
    t = [rng.normal(size=(2, 4, 5)) for _ in range(2)]
    projs = [_linear(3, 5, 3), _linear(3, 5, 4)]
    keep = mask.astype(bool)
    want = np.mean([(1 - _np_cos(_np_linear(p, a), b))[keep].mean() for a, b, p in zip(s, t, projs)])
    half = [[torch.tensor(a, dtype=torch.float16) for a in states] for states in (s, t)]
    got = token_loss(half[0], half[1], projs, torch.tensor(mask))
    assert got.dtype == torch.float32 and float(got) == pytest.approx(want, rel=2e-3)


# ----------------------------------------------------------------------------------------------------------
# the class bias: modeling/calibration.py (log_probs, cross_entropy, fit_class_bias, cross_fitted_gain,
# set_class_bias)
# ----------------------------------------------------------------------------------------------------------
CB_Z = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.2, 0.1], [-1.0, 0.0, 2.5], [1.0, 1.0, 1.0],
                 [0.3, -0.2, 0.0], [2.0, 2.5, -3.0], [0.0, -1.0, 0.5]])
CB_Y = np.array([0, 1, 2, 2, 1, 0, 1, 2])


def test_class_bias_log_probs_and_cross_entropy_equal_their_formulas():
    from modeling.calibration import cross_entropy, log_probs

    z32 = CB_Z.astype(np.float32)
    lp = log_probs(z32)
    assert lp.dtype == np.float64
    np.testing.assert_allclose(lp, _np_log_softmax(z32), rtol=1e-12, atol=1e-12)
    b = np.array([0.3, -0.5, 0.2])
    want = -_np_log_softmax(CB_Z + b)[np.arange(8), CB_Y].mean()
    assert cross_entropy(b, CB_Z, CB_Y) == pytest.approx(want, rel=1e-12)
    assert cross_entropy(np.zeros(3), np.zeros((2, 3)), np.array([0, 2])) == pytest.approx(math.log(3), rel=1e-12)


def test_fit_class_bias_zeroes_the_gradient_and_is_centred():
    """At the optimum, mean softmax(z + b) over the posts equals the labels' class frequencies (the gradient of
    the cross-entropy in b); b sums to 0; a class no label has gets the lowest bias."""
    from modeling.calibration import fit_class_bias

    b = fit_class_bias(CB_Z, CB_Y)
    assert b.shape == (3,) and abs(b.sum()) < 1e-12
    p = np.exp(_np_log_softmax(CB_Z + b))
    np.testing.assert_allclose(p.mean(0), np.bincount(CB_Y) / 8, atol=1e-4)
    # only log-probabilities count: adding a constant to a row changes nothing
    np.testing.assert_allclose(fit_class_bias(CB_Z + np.arange(8)[:, None] * 7.0, CB_Y), b, atol=1e-5)
    # a class no post has (the last one): its bias goes down, and the others still match the frequencies
    y = np.array([0, 1, 1, 0, 1, 0, 1, 1])
    b = fit_class_bias(CB_Z, y)
    assert b[2] < b[0] - 3 and b[2] < b[1] - 3 and np.isfinite(b).all()
    np.testing.assert_allclose(np.exp(_np_log_softmax(CB_Z + b)).mean(0)[:2], [3 / 8, 5 / 8], atol=1e-3)
    with pytest.raises(ValueError) as e:
        fit_class_bias(np.zeros((0, 3)), np.zeros(0, np.int64))
    assert str(e.value) == "no validation posts to fit a class bias on"


def test_cross_fitted_gain_equals_the_held_out_folds_written_out():
    from modeling.calibration import cross_entropy, cross_fitted_gain, fit_class_bias
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 60)
    z = np.eye(3)[y] * 1.0 + rng.normal(0, 1, (60, 3)) + np.array([0.8, 0.0, -0.8])
    for folds, seed in ((5, 13), (3, 1)):
        fold = np.random.default_rng(seed).permutation(60) % folds  # post i is held out in fold[i]
        after, change = np.zeros(60, int), 0.0
        for f in range(folds):
            held = fold == f
            b = fit_class_bias(z[~held], y[~held])
            after[held] = (z[held] + b).argmax(1)
            change += (cross_entropy(b, z[held], y[held]) - cross_entropy(np.zeros(3), z[held], y[held])) * held.sum()
        gain = (f1_score(y, after, average="weighted") - f1_score(y, z.argmax(1), average="weighted"))
        got = cross_fitted_gain(z, y) if (folds, seed) == (5, 13) else cross_fitted_gain(z, y, folds, seed)
        assert got == {"val_wf1_gain_cv": round(gain, 4), "val_cross_entropy_change_cv": round(change / 60, 4),
                       "folds": folds}
        assert got["val_wf1_gain_cv"] != 0 and got["val_cross_entropy_change_cv"] != 0


def test_set_class_bias_writes_the_rounded_bias_the_rule_and_the_record(tmp_path):
    import json

    from modeling.calibration import RULE, set_class_bias

    config = {"labels": ["негатив", "нейтрал", "позитив"], "max_length": 8}
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    set_class_bias(tmp_path, np.array([0.1234567891, -0.5, 0.3765432109]), {"folds": 5, "val_wf1_gain_cv": 0.01})
    text = (tmp_path / "config.json").read_text(encoding="utf-8")
    want = {**config, "class_bias": {"bias": [0.123457, -0.5, 0.376543], "rule": RULE, "folds": 5,
                                     "val_wf1_gain_cv": 0.01}}
    assert text == json.dumps(want, indent=2, ensure_ascii=False)
    assert RULE == "minimum validation cross-entropy of softmax(answer + bias)"
    for bad in (np.zeros(2), np.array([0.0, np.nan, 0.0]), np.array([np.inf, 0.0, 0.0])):
        with pytest.raises(ValueError) as e:
            set_class_bias(tmp_path, bad, {})
        assert str(e.value) == f"class bias must be 3 finite numbers, got {list(bad)}"
    assert (tmp_path / "config.json").read_text(encoding="utf-8") == text


# ----------------------------------------------------------------------------------------------------------
# the gold expert's runtime: inference/expert.py (log_softmax, unique_counts, tfidf_row, GoldExpert, fuse)
# ----------------------------------------------------------------------------------------------------------
def _np_tfidf_row(ids, idf):
    """Sublinear tf-idf of one text, L2-normalised: (1 + ln tf) * idf per distinct bucket."""
    u, tf = np.unique(np.asarray(ids, np.int64), return_counts=True)
    x = (1 + np.log(tf)) * np.asarray(idf, np.float64)[u]
    n = np.sqrt((x * x).sum())
    return u, (x / n if n > 0 else x)


def _gold(k=3, buckets=16, int8=True, seed=0, spec=None):
    from inference.expert import GoldExpert

    rng = np.random.default_rng(seed)
    spec = spec or LexicalSpec(buckets=buckets, char_min=2, char_max=3)
    if int8:
        table, scale = rng.integers(-127, 128, (spec.buckets, k)).astype(np.int8), rng.uniform(0.01, 0.05, k)
    else:
        table, scale = rng.normal(0, 1, (spec.buckets, k)).astype(np.float32), None
    idf = rng.uniform(1, 3, spec.buckets).astype(np.float32)
    idf[7 % spec.buckets] = 1.0  # a bucket in every training post: a text with only that n-gram, once, has norm 1
    return GoldExpert(spec=spec, table=table, scale=scale, idf=idf, bias=rng.normal(0, 0.5, k),
                      calib=rng.normal(0, 1, (k, k)), calib_bias=rng.normal(0, 0.5, k))


def _np_scores(g, ids):
    u, x = _np_tfidf_row(ids, g.idf)
    s = x @ g.table[u].astype(np.float64) if len(u) else np.zeros(g.table.shape[1])
    return s * (1.0 if g.scale is None else g.scale.astype(np.float64)) + g.bias


EXPERT_IDS = [np.array([3, 1, 3, 3, 0, 15, 1], np.int64), np.array([7], np.int64), np.zeros(0, np.int64),
              np.array([2, 2, 2, 2], np.int64), np.array([15, 0, 9, 4, 12], np.int64)]


def test_expert_log_softmax_and_fuse_equal_their_formulas():
    from inference.expert import fuse, log_softmax

    np.testing.assert_allclose(log_softmax(KD_S), _np_log_softmax(KD_S), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_softmax(np.array([0.0, math.log(3.0)])), np.log([0.25, 0.75]), rtol=1e-12)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        np.testing.assert_allclose(log_softmax(np.array([[1000.0, 1000.0 + math.log(3.0)], [-800.0, -800.0]])),
                                   np.log([[0.25, 0.75], [0.5, 0.5]]), rtol=1e-12)
    e = _np_log_softmax(KD_T)
    for w in (0.0, 0.4, 1.0):
        got = fuse(KD_S, e, w)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, (1 - w) * _np_log_softmax(KD_S) + w * e, rtol=1e-5, atol=1e-5)
    got = fuse(KD_S, None, 0.5)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _np_log_softmax(KD_S), rtol=1e-6, atol=1e-6)


def test_unique_counts_equals_np_unique():
    from inference.expert import unique_counts

    for ids in EXPERT_IDS + [np.array([5, 5], np.int64), np.array([9, 3], np.int64)]:
        u, c = unique_counts(ids)
        want_u, want_c = np.unique(ids, return_counts=True)
        assert u.tolist() == want_u.tolist() and c.tolist() == want_c.tolist()
    u, c = unique_counts(np.zeros(0, np.int64))
    assert u.shape == (0,) and c.shape == (0,) and c.dtype == np.int64


def test_tfidf_row_is_sublinear_tf_times_idf_l2_normalised():
    from inference.expert import tfidf_row

    idf = np.linspace(1.0, 2.5, 16).astype(np.float32)
    for ids in EXPERT_IDS:
        u, x = tfidf_row(ids, idf)
        want_u, want_x = _np_tfidf_row(ids, idf)
        assert u.tolist() == want_u.tolist() and x.dtype == np.float32
        np.testing.assert_allclose(x, want_x, rtol=1e-6)
    # known answer: ids [0, 0, 0, 1] with idf 1 and 2: values (1 + ln 3, 2), L2-normalised
    u, x = tfidf_row(np.array([0, 1, 0, 0]), np.array([1.0, 2.0]))
    v = np.array([1 + math.log(3), 2.0])
    assert u.tolist() == [0, 1]
    np.testing.assert_allclose(x, v / np.linalg.norm(v), rtol=1e-6)
    u, x = tfidf_row(np.array([1, 1]), np.array([1.0, 0.0]))  # a zero idf: the zero vector, not 0 / 0
    assert u.tolist() == [1] and x.tolist() == [0.0]
    u, x = tfidf_row(np.array([1]), np.array([1.0, 0.5]))  # a norm below 1 is normalised too
    assert u.tolist() == [1] and x.tolist() == [1.0]


@pytest.mark.parametrize("int8", [True, False], ids=["int8-table", "float-table"])
def test_gold_expert_scores_and_log_probs_equal_the_documented_map(int8):
    """scores = tfidf(ids) @ table * scale + bias; log p = log_softmax(scores @ calib + calib_bias), text by text."""
    g = _gold(int8=int8)
    for ids in EXPERT_IDS:
        np.testing.assert_allclose(g.scores_of(ids), _np_scores(g, ids), rtol=1e-5, atol=1e-5)
    want = _np_log_softmax(np.stack([_np_scores(g, ids) @ g.calib + g.calib_bias for ids in EXPERT_IDS]))
    got = g.log_probs_of(EXPERT_IDS)
    assert got.shape == (5, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    texts = ["хорошо хорошо день", "", "да"]
    want = _np_log_softmax(np.stack([_np_scores(g, reference_features(t, g.spec)) @ g.calib + g.calib_bias
                                     for t in texts]))
    np.testing.assert_allclose(g.log_probs(texts), want, rtol=1e-5, atol=1e-5)
    assert g.log_probs_of([]).shape == (0, 3)


def test_gold_expert_arrays_nbytes_save_and_load(tmp_path):
    from inference.expert import GoldExpert

    g = _gold(k=3, buckets=16)
    a = g.arrays()
    assert sorted(a) == ["bias", "calib", "calib_bias", "idf", "scale", "table"]
    assert {k: v.dtype for k, v in a.items()} == {"table": np.int8, "idf": np.float16, "bias": np.float32,
                                                  "calib": np.float32, "calib_bias": np.float32, "scale": np.float32}
    assert g.nbytes == 16 * 3 + 16 * 2 + 3 * 4 + 9 * 4 + 3 * 4 + 3 * 4
    assert g.save(tmp_path / "e.npz") == tmp_path / "e.npz"
    back = GoldExpert.load(tmp_path / "e.npz", g.spec)
    assert back.idf.dtype == np.float32 and back.table.dtype == np.int8
    np.testing.assert_allclose(back.idf, g.idf.astype(np.float16), rtol=0)
    for k in ("table", "scale", "bias", "calib", "calib_bias"):
        np.testing.assert_allclose(getattr(back, k), np.asarray(getattr(g, k), np.float32), rtol=1e-7)
    np.testing.assert_allclose(back.log_probs_of(EXPERT_IDS), g.log_probs_of(EXPERT_IDS), rtol=1e-3, atol=1e-3)
    f = _gold(int8=False, seed=1)
    assert "scale" not in f.arrays() and f.nbytes == 16 * 3 * 4 + 16 * 2 + 3 * 4 + 9 * 4 + 3 * 4
    f.save(tmp_path / "f.npz")
    assert GoldExpert.load(tmp_path / "f.npz", f.spec).scale is None
    # a missing array, and a table of another size than the spec's buckets, are named
    np.savez(tmp_path / "m.npz", **{k: v for k, v in a.items() if k not in ("calib", "bias")})
    with pytest.raises(KeyError) as e:
        GoldExpert.load(tmp_path / "m.npz", g.spec)
    assert e.value.args[0] == "arrays ['bias', 'calib'] missing"
    with pytest.raises(ValueError) as e:
        GoldExpert.load(tmp_path / "e.npz", LexicalSpec(buckets=32, char_min=2, char_max=3))
    assert str(e.value) == "table (16, 3) / idf (16,) do not match 32 buckets"
    np.savez(tmp_path / "i.npz", **{**a, "idf": a["idf"][:8]})
    with pytest.raises(ValueError) as e:
        GoldExpert.load(tmp_path / "i.npz", g.spec)
    assert str(e.value) == "table (16, 3) / idf (8,) do not match 16 buckets"


# ----------------------------------------------------------------------------------------------------------
# the gold expert's fit and fusion weight: modeling/expert.py (idf_of, tfidf, nb_ratios, quantize_table,
# oof_scores, fit_expert*, choose_weight, set_weight); the fit's reference is scikit-learn called directly
# ----------------------------------------------------------------------------------------------------------
def _counts(rows, buckets):
    """A csr count matrix from lists of bucket ids (duplicates summed)."""
    from scipy import sparse

    dense = np.zeros((len(rows), buckets), np.float32)
    for i, r in enumerate(rows):
        for j in r:
            dense[i, j] += 1
    return sparse.csr_matrix(dense)


COUNT_ROWS = [[0, 0, 1, 5], [1, 2], [], [5, 5, 5, 3], [0, 3, 4, 4]]


def test_idf_of_is_smoothed_idf():
    from modeling.expert import idf_of

    idf = idf_of(_counts(COUNT_ROWS, 7))
    df = np.array([2, 2, 1, 2, 1, 2, 0])  # posts holding each bucket
    assert idf.dtype == np.float32
    np.testing.assert_allclose(idf, np.log(6 / (1 + df)) + 1, rtol=1e-6)


def test_tfidf_of_a_count_matrix_is_the_runtimes_row_by_row():
    from modeling.expert import tfidf

    idf = np.array([1.0, 1.5, 0.0, 1.2, 2.5, 1.1, 3.0], np.float32)  # bucket 2 weighs 0: post 1 is the zero vector
    x = tfidf(_counts(COUNT_ROWS + [[2, 2]], 7), idf)
    assert x.format == "csr" and x.shape == (6, 7) and x.dtype == np.float32
    dense = x.toarray()
    assert not np.isnan(dense).any() and dense[5].tolist() == [0.0] * 7
    for i, r in enumerate(COUNT_ROWS):
        want = np.zeros(7)
        if r:
            u, v = _np_tfidf_row(r, idf)
            want[u] = v
        np.testing.assert_allclose(dense[i], want, rtol=1e-6, atol=1e-7)


def test_nb_ratios_are_naive_bayes_log_count_ratios_of_each_class_against_the_rest():
    from modeling.expert import nb_ratios

    x = _counts(COUNT_ROWS, 7)
    y = np.array([0, 1, 2, 0, 1])
    dense = x.toarray().astype(np.float64)
    for alpha in (1.0, 0.5):
        got = nb_ratios(x, y, 3, alpha) if alpha != 1.0 else nb_ratios(x, y, 3)
        assert got.shape == (7, 3) and got.dtype == np.float32
        for k in range(3):
            p = alpha + dense[y == k].sum(0)
            q = alpha + dense[y != k].sum(0)
            np.testing.assert_allclose(got[:, k], np.log(p / p.sum()) - np.log(q / q.sum()), rtol=1e-5, atol=1e-6)


def test_quantize_table_known_answers():
    from modeling.expert import quantize_table

    w = np.array([[1.0, 0.0, -0.5], [-2.0, 0.0, 0.25], [0.5, 0.0, 0.1]])
    table, scale = quantize_table(w)
    assert table.dtype == np.int8 and scale.dtype == np.float32
    np.testing.assert_allclose(scale, np.array([2.0, 1e-12, 0.5]) / 127.0, rtol=1e-7)
    assert table.tolist() == [[64, 0, -127], [-127, 0, 64], [32, 0, 25]]  # 63.5 -> 64, 31.75 -> 32, 25.4 -> 25


def _expert_task(n_per_class=10, classes=3, seed=0):
    import random

    from tests.fixtures import tiny_texts

    rng = random.Random(seed)
    names = ["negative", "positive", "neutral"][:classes]
    texts, labels = [], []
    for k, name in enumerate(names):
        texts += tiny_texts(name, n_per_class, rng)
        labels += [k] * n_per_class
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order], np.array(labels)[order]


def _sk_oof(x, y, c, folds, seed):
    """Out-of-fold scores written with scikit-learn: stratified shuffled folds, one LinearSVC(C, seed) per fold."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import LinearSVC

    k = len(np.unique(y))
    out = np.zeros((x.shape[0], k))
    for fit_rows, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        clf = LinearSVC(C=c, random_state=seed).fit(x[fit_rows], y[fit_rows])
        s = x[held] @ clf.coef_.T + clf.intercept_
        out[held] = np.concatenate([-s, s], 1) if k == 2 else s
    return out


def test_oof_scores_are_scikit_learns_cross_fitted_scores():
    from modeling.expert import count_matrix, idf_of, oof_scores, tfidf

    texts, y = _expert_task()
    counts = count_matrix(texts, LexicalSpec(buckets=256))
    x = tfidf(counts, idf_of(counts))
    for c, folds, seed in ((0.3, 3, 13), (1.0, 2, 5)):
        got = oof_scores(x, y, "svm", c, folds, seed)
        assert got.shape == (30, 3) and got.dtype == np.float32
        np.testing.assert_allclose(got, _sk_oof(x, y, c, folds, seed), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("classes,buckets", [(3, 4096), (2, 256)])
def test_fit_expert_is_the_best_cross_fitted_c_refitted_quantized_and_calibrated(classes, buckets, caplog):
    """The whole fit written with scikit-learn: C = the best out-of-fold weighted F1 of the grid (the first of
    ties), LinearSVC refitted on every post, its table quantized per class, a LogisticRegression(C=100) map fitted on
    the chosen C's out-of-fold scores; the cross-fitted log-probabilities are that map on those scores. 4096
    buckets: an expert of 20 KiB, so the log line's size is 0.02 MiB, not 0.00."""
    import logging

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.svm import LinearSVC

    from modeling.expert import ExpertConfig, count_matrix, fit_expert, fit_expert_cross_fitted, idf_of, tfidf

    texts, y = _expert_task(classes=classes)
    cfg = ExpertConfig(buckets=buckets, c_grid=(0.01, 0.3, 3.0), folds=3, seed=7)
    counts = count_matrix(texts, LexicalSpec(buckets=buckets))
    idf = idf_of(counts)
    x = tfidf(counts, idf)
    f1 = {c: f1_score(y, _sk_oof(x, y, c, 3, 7).argmax(1), average="weighted") for c in cfg.c_grid}
    best = max(cfg.c_grid, key=lambda c: f1[c])
    oof = _sk_oof(x, y, best, 3, 7)
    svm = LinearSVC(C=best, random_state=7).fit(x, y)
    w, b = svm.coef_.T, svm.intercept_
    if classes == 2:
        w, b = np.concatenate([-w, w], 1), np.r_[-b, b]
    scale = np.abs(w).max(0) / 127
    cal = LogisticRegression(C=100.0, max_iter=5000).fit(oof, y)
    calib, calib_bias = cal.coef_.T, cal.intercept_
    if classes == 2:
        calib, calib_bias = np.concatenate([-calib / 2, calib / 2], 1), np.r_[-calib_bias / 2, calib_bias / 2]

    with caplog.at_level(logging.INFO, logger="modeling.expert"):
        expert, record, lp = fit_expert_cross_fitted(texts, y, cfg)
    assert expert.spec == LexicalSpec(buckets=buckets)
    # the fitted expert holds what its file stores, so it answers the same before and after a save and load
    assert {k: getattr(expert, k).dtype for k in ("table", "scale", "idf", "bias", "calib", "calib_bias")} == {
        "table": np.int8, "scale": np.float32, "idf": np.float32, "bias": np.float32, "calib": np.float32,
        "calib_bias": np.float32}
    np.testing.assert_allclose(expert.idf, idf, rtol=1e-7)
    np.testing.assert_allclose(expert.scale, scale, rtol=1e-4)
    assert np.abs(expert.table.astype(np.float64) * scale - w).max() <= 0.6 * scale.max()
    np.testing.assert_allclose(expert.bias, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(expert.calib, calib, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(expert.calib_bias, calib_bias, rtol=1e-3, atol=1e-3)
    assert lp.dtype == np.float32 and lp.shape == (len(y), classes)
    np.testing.assert_allclose(lp, _np_log_softmax(oof @ calib + calib_bias), rtol=1e-3, atol=1e-3)
    fit_s = record.pop("fit_s")
    assert type(fit_s) is float and 0 <= fit_s < 600 and fit_s == round(fit_s, 1)
    assert record == {"model": "svm", "buckets": buckets, "C": best, "folds": 3,
                      "cv_weighted_f1": {str(c): round(f1[c], 4) for c in cfg.c_grid}, "train_posts": len(y),
                      "nbytes": expert.nbytes}
    lines = [r.getMessage() for r in caplog.records if r.name == "modeling.expert"]
    assert lines[:3] == [f"gold expert (svm, {buckets} buckets): C={c:g} cross-fitted wF1 {f1[c]:.4f}"
                         for c in cfg.c_grid]
    assert lines[3] == (f"gold expert: C={best:g} (cross-fitted wF1 {f1[best]:.4f}), {expert.nbytes / 2**20:.2f} MiB, "
                        f"{fit_s:.0f} s") and len(lines) == 4
    again, record2 = fit_expert(texts, y, cfg)  # fit_expert: the same expert and record, without the third part
    assert np.array_equal(again.table, expert.table) and record2["C"] == best
    # precomputed features are what is fitted (the texts are then only counted)
    feats = [features(t, LexicalSpec(buckets=buckets)) for t in texts]
    given, record3 = fit_expert(["?"] * len(texts), y, cfg, feats=feats)
    assert np.array_equal(given.table, expert.table) and record3["train_posts"] == len(y)
    given, *_ = fit_expert_cross_fitted(["?"] * len(texts), y, cfg, feats)
    assert np.array_equal(given.table, expert.table)


def test_fit_expert_refuses_no_buckets_and_labels_that_are_not_0_to_k_minus_1():
    from modeling.expert import ExpertConfig, fit_expert

    texts, y = _expert_task()
    with pytest.raises(ValueError) as e:
        fit_expert(texts, y, ExpertConfig(buckets=0))
    assert str(e.value) == "ExpertConfig.buckets is 0: no expert to fit"
    for bad in (np.where(y == 1, 3, y), y + 1):
        with pytest.raises(ValueError) as e:
            fit_expert(texts, bad, ExpertConfig(buckets=64, folds=2))
        assert str(e.value) == f"expert labels must be 0..K-1 with every class present, got {sorted(np.unique(bad))}"


def _np_choose_rows(s, e, y, weights):
    from sklearn.metrics import f1_score

    rows = {}
    for w in weights:
        lp = (1 - w) * _np_log_softmax(s) + w * e
        lp = _np_log_softmax(lp)  # the pooled distribution renormalised
        rows[float(w)] = {"nll": -lp[np.arange(len(y)), y].mean(),
                          "wf1": f1_score(y, lp.argmax(1), average="weighted")}
    return rows


def test_choose_weight_rows_and_best_weight_equal_the_formula():
    from modeling.expert import WEIGHTS, choose_weight

    assert WEIGHTS == tuple(round(0.05 * i, 2) for i in range(19))
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 40)
    s = rng.normal(0, 1, (40, 3)) + np.eye(3)[y] * 0.8
    e = _np_log_softmax(rng.normal(0, 1, (40, 3)) + np.eye(3)[y] * 1.5)
    for weights in (WEIGHTS, (0.0, 0.3, 0.9)):
        want = _np_choose_rows(s, e, y, weights)
        for rule, key, pick in (("nll", "nll", min), ("wf1", "wf1", max)):
            best, rows = choose_weight(s, e, y, rule, weights) if weights != WEIGHTS else choose_weight(s, e, y, rule)
            assert list(rows) == [float(w) for w in weights]
            for w in rows:
                assert rows[w]["nll"] == pytest.approx(want[w]["nll"], rel=1e-5)
                assert rows[w]["wf1"] == pytest.approx(want[w]["wf1"], rel=1e-9)
            assert best == pick(want, key=lambda w: want[w][key])
    best, rows = choose_weight(s, e, y)  # the default rule is nll
    assert best == min(rows, key=lambda w: rows[w]["nll"]) and 0 < best < 0.9
    best, _ = choose_weight(s, np.log(np.full((40, 3), 1 / 3)), y, "wf1")  # ties: the first (smallest) weight
    assert best == 0.0
    with pytest.raises(ValueError) as err:
        choose_weight(s, e, y, "accuracy")
    assert str(err.value) == "weight rule must be 'nll' or 'wf1', got 'accuracy'"


def test_set_weight_writes_the_weight_and_its_rule_into_the_folders_config(tmp_path):
    import json

    from modeling.expert import set_weight

    config = {"labels": ["негатив", "позитив"], "expert": {"file": "expert.npz", "weight": 0.0}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    for w, rule in ((0.35, "nll"), (1, "wf1"), (0.0, None)):
        set_weight(tmp_path, w, rule) if rule else set_weight(tmp_path, w)
        want = {**config, "expert": {"file": "expert.npz", "weight": float(w),
                                     "weight_rule": f"{rule or 'nll'} on validation"}}
        assert path.read_text(encoding="utf-8") == json.dumps(want, indent=2, ensure_ascii=False)
        assert type(json.loads(path.read_text())["expert"]["weight"]) is float
    before = path.read_text(encoding="utf-8")
    for bad in (-0.01, 1.5):
        with pytest.raises(ValueError) as e:
            set_weight(tmp_path, bad)
        assert str(e.value) == f"expert weight must be in [0, 1], got {bad}"
    assert path.read_text(encoding="utf-8") == before
    for no_expert in ({"labels": ["a"]}, {"labels": ["a"], "expert": None}, {"labels": ["a"], "expert": {}}):
        path.write_text(json.dumps(no_expert), encoding="utf-8")
        with pytest.raises(ValueError) as e:
            set_weight(tmp_path, 0.5)
        assert str(e.value) == f"{path}: this folder has no gold expert to weigh"


# ----------------------------------------------------------------------------------------------------------
# pruning: modeling/prune.py (PruneShape.check, importance, _top, prune_encoder, _copy_linear, _copy_ln) on a
# tiny BERT built in code (every weight random, LayerNorms included); importance against a numpy forward
# ----------------------------------------------------------------------------------------------------------
def _tiny_teacher(dropout=0.1):
    import torch
    from transformers import BertConfig, BertModel

    from modeling import ClassifierConfig, EncoderClassifier

    cfg = BertConfig(vocab_size=12, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=6,
                     max_position_embeddings=10, type_vocab_size=2, hidden_dropout_prob=dropout,
                     attention_probs_dropout_prob=dropout, layer_norm_eps=1e-5, pad_token_id=0)
    torch.manual_seed(0)
    enc = BertModel(cfg, add_pooling_layer=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (1.0 if p.dim() == 1 and p.shape[0] == 8 else 0.0))
    return EncoderClassifier(enc, ClassifierConfig(labels=LABELS, pooling="mean", max_length=10))


def _np_bert_importance(enc, ids, mask):
    """The tiny BERT's forward in numpy (post-LN, exact GELU, padded keys masked) and the five importance sums
    of the docstring over the unmasked tokens (not yet divided by their count)."""
    from scipy.special import erf

    P = {k: v.detach().double().numpy() for k, v in enc.state_dict().items()}
    cfg = enc.config
    n_heads, eps = cfg.num_attention_heads, cfg.layer_norm_eps
    dh = cfg.hidden_size // n_heads
    m = mask.numpy().astype(np.float64)[..., None]

    def ln(x, pre):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * P[pre + ".weight"] + P[pre + ".bias"]

    def lin(x, pre):
        return x @ P[pre + ".weight"].T + P[pre + ".bias"]

    def msum(x):
        return (np.abs(x) * m).sum((0, 1))

    b, t = ids.shape
    h = ln(P["embeddings.word_embeddings.weight"][ids.numpy()] + P["embeddings.position_embeddings.weight"][:t]
           + P["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    out = {"channels": msum(h), "heads": [], "qk": [], "v": [], "ffn": []}
    for li in range(cfg.num_hidden_layers):
        pre = f"encoder.layer.{li}."
        q, k, v = (lin(h, pre + f"attention.self.{n}") for n in ("query", "key", "value"))
        split = lambda x: x.reshape(b, t, n_heads, dh).transpose(0, 2, 1, 3)  # noqa: E731
        s = split(q) @ split(k).transpose(0, 1, 3, 2) / math.sqrt(dh)
        s = np.where(mask.numpy()[:, None, None, :] > 0, s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        ctx = (p @ split(v)).transpose(0, 2, 1, 3).reshape(b, t, -1)
        out["qk"].append(msum(q * k))
        out["heads"].append((np.linalg.norm(ctx.reshape(b, t, n_heads, dh), axis=-1) * m).sum((0, 1)))
        out["v"].append(msum(ctx) * np.linalg.norm(P[pre + "attention.output.dense.weight"], axis=0))
        a = ln(lin(ctx, pre + "attention.output.dense") + h, pre + "attention.output.LayerNorm")
        z = lin(a, pre + "intermediate.dense")
        gelu = 0.5 * z * (1 + erf(z / math.sqrt(2)))
        out["ffn"].append(msum(gelu))
        h = ln(lin(gelu, pre + "output.dense") + a, pre + "output.LayerNorm")
        out["channels"] = out["channels"] + msum(a) + msum(h)
    return {k: np.asarray(v) for k, v in out.items()}


PRUNE_IDS = [np.array([[2, 5, 7, 3, 0], [4, 4, 9, 0, 0]]), np.array([[11, 1, 6], [3, 2, 8]])]


def test_importance_is_the_mean_absolute_activation_of_each_unit_over_unmasked_tokens():
    import torch

    from modeling.prune import importance

    model = _tiny_teacher(dropout=0.3).train()  # importance must switch dropout off itself
    batches = [(torch.as_tensor(ids), torch.as_tensor((ids > 0).astype(np.int64))) for ids in PRUNE_IDS]
    batches[1][1][:] = 1  # id 0 is only padding in the first batch
    sums = [_np_bert_importance(model.encoder, ids, mask) for ids, mask in batches]
    tokens = sum(int(mask.sum()) for _, mask in batches)
    assert tokens == 7 + 6
    got = importance(model, iter(batches))
    assert sorted(got) == ["channels", "ffn", "heads", "qk", "v"]
    for k in got:
        assert got[k].dtype == np.float64
        np.testing.assert_allclose(got[k], (sums[0][k] + sums[1][k]) / tokens, rtol=1e-4, atol=1e-6, err_msg=k)
    assert not model.encoder.embeddings.LayerNorm._forward_hooks  # the hooks are removed
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with pytest.raises(ValueError) as e:
        importance(model, [(torch.as_tensor(PRUNE_IDS[0]), torch.zeros(2, 5, dtype=torch.long))])
    assert str(e.value) == "importance: no tokens seen; pass at least one non-empty batch"
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_top_picks_the_k_largest_in_index_order_and_lower_indices_on_ties():
    import torch

    from modeling.prune import _top

    for scores, k, want in (([1.0, 3.0, 3.0, 2.0, 0.0], 2, [1, 2]), ([1.0, 3.0, 3.0, 2.0, 0.0], 3, [1, 2, 3]),
                            ([5.0, 5.0, 5.0], 2, [0, 1]), ([0.0, 2.0, 1.0], 3, [0, 1, 2]),
                            ([0.1, -1.0, 0.3, 0.2], 1, [2]), ([2.0, 2.0, 1.0, 2.0], 2, [0, 1])):
        got = _top(np.array(scores), k)
        assert got.dtype == torch.long and got.tolist() == want, (scores, k)
    assert _top([4, 9, 1], 2).tolist() == [0, 1]  # a list works too
    many = np.random.default_rng(0).integers(0, 3, 64).astype(float)  # long enough for numpy's unstable quicksort
    want = sorted(sorted(range(64), key=lambda i: (-many[i], i))[:10])
    assert _top(many, 10).tolist() == want


def test_copy_linear_and_copy_ln_slice_rows_columns_and_scale():
    import torch

    from modeling.prune import _copy_linear, _copy_ln

    src, dst = _linear(4, 3, 7), torch.nn.Linear(2, 2)
    with torch.no_grad():
        _copy_linear(dst, src, torch.tensor([0, 2]), torch.tensor([1, 3]), scale=0.5)
    np.testing.assert_allclose(dst.weight.detach().numpy(), src.weight.numpy()[[0, 2]][:, [1, 3]] * 0.5, rtol=1e-6)
    np.testing.assert_allclose(dst.bias.detach().numpy(), src.bias.numpy()[[0, 2]] * 0.5, rtol=1e-6)
    with torch.no_grad():
        _copy_linear(dst, src, torch.tensor([2, 1]), torch.tensor([0, 1]))
    np.testing.assert_allclose(dst.weight.detach().numpy(), src.weight.numpy()[[2, 1]][:, [0, 1]], rtol=1e-6)
    np.testing.assert_allclose(dst.bias.detach().numpy(), src.bias.numpy()[[2, 1]], rtol=1e-6)
    ln_src, ln_dst = torch.nn.LayerNorm(4), torch.nn.LayerNorm(2)
    with torch.no_grad():
        ln_src.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        ln_src.bias.copy_(torch.tensor([-1.0, -2.0, -3.0, -4.0]))
        _copy_ln(ln_dst, ln_src, torch.tensor([3, 1]))
    assert ln_dst.weight.tolist() == [4.0, 2.0] and ln_dst.bias.tolist() == [-4.0, -2.0]


def _prune_scores(n_layers=2, width=8, n_heads=2, ffn=6):
    """Hand-set scores with a known top set at every level (see the expected indices in the test)."""
    return {"channels": np.array([0.1, 0.9, 0.5, 0.9, 0.0, 0.7, 0.2, 0.8]),          # top 6: all but 0 and 4
            "heads": np.array([[0.2, 0.3], [0.5, 0.4]]),
            "qk": np.array([[4, 1, 3, 2, 0, 9, 8, 7], [1, 2, 3, 4, 5, 6, 7, 8]], float),
            "v": np.array([[1, 4, 2, 3, 6, 5, 8, 7], [9, 1, 1, 9, 0, 0, 0, 5]], float),
            "ffn": np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]], float)}


def test_prune_encoder_slices_the_teachers_matrices_by_the_top_units():
    import torch

    from modeling.prune import PruneShape, prune_encoder

    teacher = _tiny_teacher().encoder
    shape = PruneShape(layers=1, hidden=6, heads=2, ffn=3)  # head size 3 of the teacher's 4
    vocab = np.array([3, 0, 7, 11])
    student, ch = prune_encoder(teacher, _prune_scores(), shape, vocab, max_length=6, pad_id=1)
    assert ch.tolist() == [1, 2, 3, 5, 6, 7]
    c = student.config
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (
        4, 6, 1, 2, 3)
    assert (c.max_position_embeddings, c.type_vocab_size, c.pad_token_id, c.layer_norm_eps, c.hidden_act) == (
        6, 1, 1, 1e-5, "gelu")
    assert (c.hidden_dropout_prob, c.attention_probs_dropout_prob) == (0.1, 0.1)
    T = {k: v.detach().numpy() for k, v in teacher.state_dict().items()}
    S = {k: v.detach().numpy() for k, v in student.state_dict().items()}
    chs = [1, 2, 3, 5, 6, 7]
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # noqa: E731
    close(S["embeddings.word_embeddings.weight"], T["embeddings.word_embeddings.weight"][[3, 0, 7, 11]][:, chs])
    close(S["embeddings.position_embeddings.weight"], T["embeddings.position_embeddings.weight"][:6][:, chs])
    close(S["embeddings.token_type_embeddings.weight"], T["embeddings.token_type_embeddings.weight"][:1][:, chs])
    for n in ("weight", "bias"):
        close(S[f"embeddings.LayerNorm.{n}"], T[f"embeddings.LayerNorm.{n}"][chs])
    # layer 0: both heads; qk per head: head 0 dims {0, 2, 3} (scores 4, 3, 2), head 1 dims {5, 6, 7} (9, 8, 7);
    # v: head 0 {1, 2, 3}, head 1 {4, 6, 7}; ffn {3, 4, 5}; queries scaled by sqrt(3 / 4)
    qk, v, ffn = [0, 2, 3, 5, 6, 7], [1, 2, 3, 4, 6, 7], [3, 4, 5]
    p = "encoder.layer.0."
    close(S[p + "attention.self.query.weight"], T[p + "attention.self.query.weight"][qk][:, chs] * math.sqrt(0.75))
    close(S[p + "attention.self.query.bias"], T[p + "attention.self.query.bias"][qk] * math.sqrt(0.75))
    close(S[p + "attention.self.key.weight"], T[p + "attention.self.key.weight"][qk][:, chs])
    close(S[p + "attention.self.key.bias"], T[p + "attention.self.key.bias"][qk])
    close(S[p + "attention.self.value.weight"], T[p + "attention.self.value.weight"][v][:, chs])
    close(S[p + "attention.self.value.bias"], T[p + "attention.self.value.bias"][v])
    close(S[p + "attention.output.dense.weight"], T[p + "attention.output.dense.weight"][chs][:, v])
    close(S[p + "attention.output.dense.bias"], T[p + "attention.output.dense.bias"][chs])
    close(S[p + "intermediate.dense.weight"], T[p + "intermediate.dense.weight"][ffn][:, chs])
    close(S[p + "intermediate.dense.bias"], T[p + "intermediate.dense.bias"][ffn])
    close(S[p + "output.dense.weight"], T[p + "output.dense.weight"][chs][:, ffn])
    close(S[p + "output.dense.bias"], T[p + "output.dense.bias"][chs])
    for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
        for n in ("weight", "bias"):
            close(S[p + f"{ln}.{n}"], T[p + f"{ln}.{n}"][chs])
    # one head of size 4 from layer 1's best head (head 0: 0.5 > 0.4), its own dims; other dropout
    student, ch = prune_encoder(teacher, _prune_scores(), PruneShape(2, 4, 1, 2), np.arange(12), max_length=64,
                                pad_id=0, dropout=0.0, attention_dropout=0.25)
    assert ch.tolist() == [1, 3, 5, 7] and student.config.max_position_embeddings == 10  # the teacher's 10 < 64
    assert (student.config.hidden_dropout_prob, student.config.attention_probs_dropout_prob) == (0.0, 0.25)
    S = {k: v.detach().numpy() for k, v in student.state_dict().items()}
    p = "encoder.layer.1."
    close(S[p + "attention.self.query.weight"], T[p + "attention.self.query.weight"][[0, 1, 2, 3]][:, [1, 3, 5, 7]])
    close(S[p + "attention.self.value.weight"], T[p + "attention.self.value.weight"][[0, 1, 2, 3]][:, [1, 3, 5, 7]])
    close(S[p + "intermediate.dense.weight"], T[p + "intermediate.dense.weight"][[0, 1]][:, [1, 3, 5, 7]])
    close(S["encoder.layer.0.intermediate.dense.weight"],
          T["encoder.layer.0.intermediate.dense.weight"][[4, 5]][:, [1, 3, 5, 7]])
    close(S["encoder.layer.0.attention.self.key.weight"],
          T["encoder.layer.0.attention.self.key.weight"][[4, 5, 6, 7]][:, [1, 3, 5, 7]])  # layer 0's best: head 1
    with torch.no_grad():  # nothing removed: the teacher's own hidden states
        full, _ = prune_encoder(teacher, _prune_scores(), PruneShape(2, 8, 2, 6), np.arange(12), 10, 0)
        ids = torch.as_tensor(PRUNE_IDS[0])
        mask = (ids > 0).long()
        torch.testing.assert_close(full.eval()(input_ids=ids, attention_mask=mask).last_hidden_state,
                                   teacher.eval()(input_ids=ids, attention_mask=mask).last_hidden_state)


def test_prune_shape_check_names_every_problem():
    from types import SimpleNamespace

    from modeling.prune import PruneShape

    tc = SimpleNamespace(num_hidden_layers=3, hidden_size=12, num_attention_heads=3, intermediate_size=20)
    for ok in (PruneShape(1, 1, 1, 1), PruneShape(3, 12, 3, 20), PruneShape(2, 8, 2, 5), PruneShape(1, 4, 1, 1)):
        ok.check(tc)
    cases = {PruneShape(0, 12, 3, 20): "layers=0 (teacher has 3)",
             PruneShape(4, 12, 3, 20): "layers=4 (teacher has 3)",
             PruneShape(3, 0, 1, 20): "hidden=0 (teacher has 12)",
             PruneShape(3, 13, 1, 20): "hidden=13 (teacher has 12); head size 13 > the teacher's 4",
             PruneShape(3, 12, 0, 20): "heads=0 (teacher has 3; must divide hidden)",
             PruneShape(3, 12, 4, 20): "heads=4 (teacher has 3; must divide hidden)",
             PruneShape(3, 10, 3, 20): "heads=3 (teacher has 3; must divide hidden)",
             PruneShape(3, 10, 2, 20): "head size 5 > the teacher's 4",
             PruneShape(3, 12, 3, 0): "ffn=0 (teacher has 20)",
             PruneShape(3, 12, 3, 21): "ffn=21 (teacher has 20)",
             PruneShape(0, 12, 2, 21):
                 "layers=0 (teacher has 3); head size 6 > the teacher's 4; ffn=21 (teacher has 20)"}
    for shape, why in cases.items():
        with pytest.raises(ValueError) as e:
            shape.check(tc)
        assert str(e.value) == "cannot cut this student from the teacher: " + why, shape


def test_config_writers_read_utf8_whatever_the_locale(tmp_path):
    """``set_weight`` and ``set_class_bias`` read ``config.json`` as UTF-8, not in the locale's encoding: under an
    ASCII locale (LC_ALL=C with Python's UTF-8 mode and locale coercion off) a Cyrillic label still reads, and
    the written file keeps it. Kills the ``encoding=None`` mutants of both (docs/mutation_survivors.md)."""
    import json
    import os
    import subprocess
    import sys

    folder = tmp_path / "m"
    folder.mkdir()
    config = {"labels": ["плохо", "хорошо"], "expert": {"weight": 0.5, "buckets": 16}}
    (folder / "config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    code = ("import locale, sys, numpy as np\n"
            "assert locale.getpreferredencoding(False).upper() in ('ANSI_X3.4-1968', 'ASCII'), locale.getpreferredencoding(False)\n"
            "from modeling.expert import set_weight\nfrom modeling.calibration import set_class_bias\n"
            "set_weight(sys.argv[1], 0.25)\nset_class_bias(sys.argv[1], np.array([0.1, -0.1]), {})\n")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, env=env, cwd=Path(__file__).parents[1])
    written = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert written["labels"] == ["плохо", "хорошо"] and written["expert"]["weight"] == 0.25
    assert written["class_bias"]["bias"] == [0.1, -0.1]
