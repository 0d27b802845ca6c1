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
  changes nothing (batch vs single calls, truncation marks, top_k order), on a stub session.
"""
from __future__ import annotations

import math
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
