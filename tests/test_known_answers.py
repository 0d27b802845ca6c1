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


def test_lexical_word_only_text_without_letters_has_char_ngrams_and_no_words():
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
    df = pd.DataFrame({"x": [np.nan, 1.0, 2.0, 3.0, 0.5], "y": [9.0, 1.0, 2.0, np.nan, np.nan],
                       "name": ["nan-x", "a", "b", "nan-y", "nan-y-small-x"]}, index=[10, 11, 12, 13, 14])
    f = front_2d(df, "x", "y")
    assert f.index.tolist() == [11, 12] and f.name.tolist() == ["a", "b"]
    assert list(f.columns) == ["x", "y", "name"]


def test_front_2d_of_no_rows_is_empty():
    df = pd.DataFrame({"x": [np.nan], "y": [1.0]})
    assert len(front_2d(df, "x", "y")) == 0
    assert len(front_2d(df.iloc[:0], "x", "y")) == 0


# ----------------------------------------------------------------------------------------------------------
# PTQ: modeling/onnx_export.py quantize_int8 / quantize_graph on a tiny graph built in code
# ----------------------------------------------------------------------------------------------------------
V, H, C = 40, 64, 5  # vocabulary, width (two 4-bit blocks of 32), classes


def _tiny_graph(path, seed=0):
    """logits = Gemm(relu(MatMul(sum over unmasked tokens of emb[input_ids], w1)), w2, b2): a Gather (the
    embedding table), a weight MatMul and the head, a Gemm whose output is ``logits``, as an export has them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(0, 1, (V, H)).astype(np.float32), "emb"),
             numpy_helper.from_array(rng.normal(0, 0.2, (H, H)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.2, (H, C)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(0, 0.1, (C,)).astype(np.float32), "b2"),
             numpy_helper.from_array(np.array([-1], np.int64), "ax_last"),
             numpy_helper.from_array(np.array([1], np.int64), "ax_seq")]
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["e"], name="embed"),
             helper.make_node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT, name="cast"),
             helper.make_node("Unsqueeze", ["mf", "ax_last"], ["m3"], name="unsqueeze"),
             helper.make_node("Mul", ["e", "m3"], ["em"], name="mask"),
             helper.make_node("ReduceSum", ["em", "ax_seq"], ["pooled"], keepdims=0, name="pool"),
             helper.make_node("MatMul", ["pooled", "w1"], ["h"], name="dense"),
             helper.make_node("Relu", ["h"], ["hr"], name="act"),
             helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"], name="head")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"]),
                                              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", C])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
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


def test_quantize_int8_makes_every_weight_and_the_embedding_table_per_tensor_int8(tmp_path):
    from modeling.onnx_export import quantize_int8

    src = _tiny_graph(tmp_path / "src.onnx")
    assert quantize_int8(src, tmp_path / "int8.onnx") == tmp_path / "int8.onnx"
    g = _graph(tmp_path / "int8.onnx")
    ops, inits, _ = g
    assert not _float_weight_matmuls(g) and ops.count("MatMulInteger") == 2 and "DynamicQuantizeLinear" in ops
    assert "MatMul" not in ops and "Gemm" not in ops
    assert inits["w1_quantized"].dtype == np.int8 and inits["w2_quantized"].dtype == np.int8  # QInt8 weights
    assert inits["emb_quantized"].shape == (V, H) and "emb" not in inits  # the Gather's table too
    assert inits["w1_scale"].size == 1 and inits["w2_scale"].size == 1  # per tensor, not per channel
    assert all(a.dtype != np.float32 or a.size < H * C for n, a in inits.items() if n != "b2")  # no fp32 weight left
    _assert_close_to_fp32(_logits(tmp_path / "int8.onnx"), _logits(src), 0.05)


def test_quantize_graph_int8_is_quantize_int8(tmp_path):
    from modeling.onnx_export import quantize_graph, quantize_int8

    src = _tiny_graph(tmp_path / "src.onnx")
    assert quantize_graph(src, tmp_path / "a.onnx", "int8") == tmp_path / "a.onnx"
    quantize_int8(src, tmp_path / "b.onnx")
    a, b = _graph(tmp_path / "a.onnx"), _graph(tmp_path / "b.onnx")
    assert a[0] == b[0] and a[1].keys() == b[1].keys()
    assert all(np.array_equal(a[1][k], b[1][k]) for k in a[1])


def test_quantize_graph_fp32_copies_the_graph_byte_for_byte(tmp_path):
    from modeling.onnx_export import quantize_graph

    src = _tiny_graph(tmp_path / "src.onnx")
    assert quantize_graph(src, tmp_path / "fp32.onnx", "fp32") == tmp_path / "fp32.onnx"
    assert (tmp_path / "fp32.onnx").read_bytes() == src.read_bytes()


def test_quantize_graph_per_channel_has_one_int8_scale_per_output_channel(tmp_path):
    from modeling.onnx_export import quantize_graph

    src = _tiny_graph(tmp_path / "src.onnx")
    quantize_graph(src, tmp_path / "pc.onnx", "int8-per-channel")
    g = _graph(tmp_path / "pc.onnx")
    ops, inits, _ = g
    assert not _float_weight_matmuls(g) and ops.count("MatMulInteger") == 2
    assert inits["w1_quantized"].dtype == np.int8 and inits["w2_quantized"].dtype == np.int8
    assert inits["w1_scale"].shape == (H,) and inits["w2_scale"].shape == (C,)
    assert inits["emb_quantized"].shape == (V, H) and "emb" not in inits
    _assert_close_to_fp32(_logits(tmp_path / "pc.onnx"), _logits(src), 0.05)


def test_quantize_graph_static_is_qdq_per_channel_with_the_head_in_fp32(tmp_path):
    from modeling.onnx_export import quantize_graph

    src = _tiny_graph(tmp_path / "src.onnx")
    quantize_graph(src, tmp_path / "static.onnx", "int8-static", _calibration())
    g = _graph(tmp_path / "static.onnx")
    ops, inits, nodes = g
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(ops) and "MatMulInteger" not in ops
    assert _float_weight_matmuls(g) == ["head"] and nodes["head"].op_type == "Gemm"  # the head stays fp32
    assert inits["w1_quantized"].dtype == np.int8 and inits["w1_scale"].shape == (H,)  # per channel, QInt8
    assert inits["h_zero_point"].dtype == np.uint8  # activations QUInt8
    assert inits["emb"].dtype == np.float32  # static int8 takes MatMul and Gemm only
    _assert_close_to_fp32(_logits(tmp_path / "static.onnx"), _logits(src), 0.05)


def test_quantize_graph_static_calibration_sets_the_activation_ranges(tmp_path):
    from modeling.onnx_export import quantize_graph

    src = _tiny_graph(tmp_path / "src.onnx")
    calibration = _calibration()
    quantize_graph(src, tmp_path / "all.onnx", "int8-static", calibration)
    one = [{"input_ids": b["input_ids"], "attention_mask": np.eye(*b["attention_mask"].shape, dtype=np.int64)}
           for b in calibration]  # one token per post: pooled vectors (sums over tokens) of a smaller range
    quantize_graph(src, tmp_path / "one.onnx", "int8-static", one)
    full, small = _graph(tmp_path / "all.onnx")[1], _graph(tmp_path / "one.onnx")[1]
    assert float(full["pooled_scale"]) > 1.5 * float(small["pooled_scale"]) > 0


def test_quantize_graph_int4_has_symmetric_4_bit_blocks_of_32_and_int8_embeddings(tmp_path):
    from modeling.onnx_export import quantize_graph

    src = _tiny_graph(tmp_path / "src.onnx")
    assert quantize_graph(src, tmp_path / "int4.onnx", "int4") == tmp_path / "int4.onnx"
    g = _graph(tmp_path / "int4.onnx")
    ops, inits, nodes = g
    assert ops.count("MatMulNBits") == 1 and "MatMulInteger" not in ops
    nbits = nodes["dense_Q4"]
    attrs = {a.name: a.i for a in nbits.attribute}
    assert attrs["bits"] == 4 and attrs["block_size"] == 32 and (attrs["K"], attrs["N"]) == (H, H)
    assert len(nbits.input) == 3 and not any("zero_points" in n for n in inits if n.startswith("w1"))  # symmetric
    assert inits["emb_quantized"].dtype == np.uint8 and "emb" not in inits  # the embeddings: dynamic int8
    assert _float_weight_matmuls(g) == ["head_MatMul"] or _float_weight_matmuls(g) == ["head"]  # the head stays fp32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int4.onnx", "src.onnx"]  # the 4-bit step's file removed
    _assert_close_to_fp32(_logits(tmp_path / "int4.onnx"), _logits(src), 0.25)


def test_quantize_graph_refuses_an_unknown_form_and_static_without_calibration(tmp_path):
    from modeling.onnx_export import quantize_graph

    src = _tiny_graph(tmp_path / "src.onnx")
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
    assert calls[10:15] == [(2, 3), (2, 6), (2, 4), (2, 2), (2, 2)]        # batch 2: padded to the longer


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
        clf.logits(["да"] * 100, batch_size=4)  # progress off: silent
        clf.logits(["да"] * 5, batch_size=30, progress=True)  # one batch: nothing to report
    assert [r for r in caplog.records if r.name == "inference.classifier"] == []

