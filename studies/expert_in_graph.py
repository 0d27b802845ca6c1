"""The gold expert as ONNX nodes inside the student's graph: measured, not adopted (issue 22, sixth round).

    python -m studies.expert_in_graph FOLDER... > results/expert-cost/in_graph.txt

``inference.expert.GoldExpert`` computes the expert in numpy: ~50 small numpy calls per text, 0.18-0.21 ms of the
shipped student's 0.65 ms call. This module writes the same computation as graph nodes: the n-gram hashing of ``inference.lexical.features``
(polynomial rolling hash mod 2^64, splitmix64 finaliser; the same bucket ids), the sublinear tf-idf, the
folded table ``GoldExpert._packed`` and the log-softmax. A runtime would then pass only the text's code points
(``graph_inputs``) and read the expert's log-probabilities as a second graph output,
``expert_log_probs``; the fusion with the student's logits stays in ``inference.expert.fuse``. Measured
(``docs/results.md``, sixth round): the same answers at the same speed, so the cost is per operation, whichever
library runs it, and the runtime keeps the numpy expert.

Graph inputs (a batch of B texts; ``graph_inputs`` below builds them with a dozen numpy calls per
batch, and the graph does the per-n-gram work):

- ``text_ids`` int64 [B]: 0 .. B - 1.
- ``chars`` uint32 [L]: code points of each lower-cased text's words padded like ``char_wb`` (``" w1  w2 "``),
  all texts joined; ``char_text`` int64 [L]: the text each belongs to.
- ``word_chars`` uint32 [W]: code points of the ``\\w+`` words (each cut to 64), all joined; ``word_pos`` int64
  [W]: each one's position inside its word; ``word_ends``, ``word_lens``, ``word_text`` int64 [N]: each word's
  end in ``word_chars``, its length and its text.

The arithmetic is in uint64 where ONNX Runtime has kernels for it (Mul, Add, BitwiseXor, BitShift, Mod) and in
int64 for the one running sum (CumSum has no uint64 kernel; two's complement addition gives the same bits).
Needs opset 18 (BitwiseXor).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inference.expert import GoldExpert
from inference.lexical import _MAX_WORD, _P, _POW, _SALT, _TAG_BIGRAM, _TAG_WORD, _WORD

OPSET = 18
INPUTS = ("text_ids", "chars", "char_text", "word_chars", "word_pos", "word_ends", "word_lens", "word_text")
OUTPUT = "expert_log_probs"
PREFIX = "expert/"   # every node, initializer and intermediate name of the expert carries it


class _Graph:
    """A few helpers over lists of nodes and initializers (names prefixed, constants deduplicated)."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self._consts: dict[tuple, str] = {}
        self._n = 0

    def const(self, value, dtype) -> str:
        a = np.asarray(value, dtype=dtype)
        key = (a.dtype.str, a.shape, a.tobytes())
        if key not in self._consts:
            self._consts[key] = name = f"{PREFIX}const_{len(self._consts)}"
            self.inits[name] = numpy_helper.from_array(a, name)
        return self._consts[key]

    def op(self, op_type: str, *inputs: str, n_out: int = 1, **attrs):
        self._n += 1
        outs = [f"{PREFIX}{op_type.lower()}_{self._n}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=f"{PREFIX}{op_type}_{self._n}", **attrs))
        return outs[0] if n_out == 1 else outs

    def head(self, x: str, k: int) -> str:
        """``x[:-k]`` (empty when x is shorter)."""
        return self.op("Slice", x, self.const([0], np.int64), self.const([-k], np.int64))

    def tail(self, x: str, k: int) -> str:
        """``x[k:]``."""
        return self.op("Slice", x, self.const([k], np.int64), self.const([np.iinfo(np.int64).max], np.int64))

    def u64(self, v: int) -> str:
        return self.const(np.uint64(v), np.uint64)


def _mix(g: _Graph, x: str, buckets: int) -> str:
    """``inference.lexical._mix``: splitmix64 finaliser, then the bucket (int64)."""
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, None)):
        x = g.op("BitwiseXor", x, g.op("BitShift", x, g.u64(shift), direction="RIGHT"))
        if mult is not None:
            x = g.op("Mul", x, g.u64(mult))
    return g.op("Cast", g.op("Mod", x, g.u64(buckets)), to=TensorProto.INT64)


def _char_ngrams(g: _Graph, spec) -> tuple[str, str]:
    """(hashes, text of each) of the char_wb n-grams, n = char_min..char_max (``features``' first part), from
    windows: row i of ``win`` holds the code points i .. i + char_max - 1 (zero past the end), so a running
    sum along the row of ``c * P^j`` is the hash of every n-gram that starts at i at once."""
    k = spec.char_max
    c = g.op("Cast", "chars", to=TensorProto.UINT64)
    is_space = g.op("Equal", "chars", g.const(np.uint32(32), np.uint32))
    # a word's chunk " w " starts at a space that follows a space (or opens the text): a new word id there
    prev_space = g.op("Concat", g.const([True], bool), g.head(is_space, 1), axis=0)
    word_of_char = g.op("CumSum", g.op("Cast", g.op("And", is_space, prev_space), to=TensorProto.INT64),
                        g.const(0, np.int64))
    n_chars = g.op("Shape", "chars")
    idx = g.op("Add", g.op("Unsqueeze", g.op("Range", g.const(0, np.int64), g.op("Squeeze", n_chars),
                                             g.const(1, np.int64)), g.const([1], np.int64)),
               g.const(np.arange(k)[None, :], np.int64))                                     # [L, k]
    win = g.op("Gather", g.op("Concat", c, g.const(np.zeros(k - 1), np.uint64), axis=0), idx)
    terms = g.op("Cast", g.op("Mul", win, g.const(_POW[None, :k], np.uint64)), to=TensorProto.INT64)
    h = g.op("Cast", g.op("CumSum", terms, g.const(1, np.int64)), to=TensorProto.UINT64)  # [L, k]: n = 1..k
    words = g.op("Gather", g.op("Concat", word_of_char, g.const(np.full(k - 1, -1), np.int64), axis=0), idx)
    inside = g.op("Equal", words, g.op("Slice", words, g.const([0], np.int64), g.const([1], np.int64),
                                       g.const([1], np.int64)))                               # [L, k]
    if spec.char_min > 1:
        h, inside = (g.op("Slice", x, g.const([spec.char_min - 1], np.int64), g.const([k], np.int64),
                          g.const([1], np.int64)) for x in (h, inside))
    salts = g.const([[_SALT[n] for n in range(spec.char_min, k + 1)]], np.uint64)
    flat_inside = g.op("Reshape", inside, g.const([-1], np.int64))
    hashes = g.op("Compress", g.op("Reshape", g.op("BitwiseXor", h, salts), g.const([-1], np.int64)), flat_inside,
                  axis=0)
    texts = g.op("Compress", g.op("Reshape", g.op("Expand", g.op("Unsqueeze", "char_text", g.const([1], np.int64)),
                                                   g.op("Shape", inside)), g.const([-1], np.int64)),
                 flat_inside, axis=0)
    return hashes, texts


def _word_ngrams(g: _Graph, spec) -> list[tuple[str, str]]:
    """(hashes, text of each) of the word unigrams and bigrams (``features``' second part): the hash of a word
    is a difference of the running sum of ``c * P^(position in its word)``."""
    terms = g.op("Mul", g.op("Cast", "word_chars", to=TensorProto.UINT64),
                 g.op("Gather", g.const(_POW, np.uint64), "word_pos"))
    running = g.op("Concat", g.const([0], np.int64),
                   g.op("CumSum", g.op("Cast", terms, to=TensorProto.INT64), g.const(0, np.int64)), axis=0)
    hw = g.op("Cast", g.op("Sub", g.op("Gather", running, "word_ends"),
                           g.op("Gather", running, g.op("Sub", "word_ends", "word_lens"))), to=TensorProto.UINT64)
    out = [(g.op("BitwiseXor", hw, g.u64(_SALT[_TAG_WORD])), "word_text")]
    if spec.word_bigrams:
        same_text = g.op("Equal", g.head("word_text", 1), g.tail("word_text", 1))
        pair = g.op("Add", g.op("Mul", g.head(hw, 1), g.u64(_P)), g.tail(hw, 1))
        out.append((g.op("BitwiseXor", g.op("Compress", pair, same_text, axis=0), g.u64(_SALT[_TAG_BIGRAM])),
                    g.op("Compress", g.head("word_text", 1), same_text, axis=0)))
    return out


def expert_nodes(expert: GoldExpert) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers computing ``expert.log_probs`` from the graph inputs ``INPUTS`` into
    ``OUTPUT`` [B, classes] (float32)."""
    g, spec = _Graph(), expert.spec
    packed, bias = expert._packed
    classes = packed.shape[1] - 1
    parts = [_char_ngrams(g, spec)] + _word_ngrams(g, spec)
    hashes = g.op("Concat", *[h for h, _ in parts], axis=0)
    texts = g.op("Concat", *[t for _, t in parts], axis=0)
    buckets = _mix(g, hashes, spec.buckets)
    key = g.op("Add", g.op("Mul", texts, g.const(spec.buckets, np.int64)), buckets)
    uniq, _, _, counts = g.op("Unique", key, n_out=4, sorted=1)
    rows = g.op("Gather", g.const(packed, np.float32), g.op("Mod", uniq, g.const(spec.buckets, np.int64)))
    table = g.op("Slice", rows, g.const([0], np.int64), g.const([classes], np.int64), g.const([1], np.int64))
    idf = g.op("Slice", rows, g.const([classes], np.int64), g.const([classes + 1], np.int64), g.const([1], np.int64))
    tf = g.op("Add", g.const(np.float32(1), np.float32), g.op("Log", g.op("Cast", counts, to=TensorProto.FLOAT)))
    x = g.op("Mul", g.op("Unsqueeze", tf, g.const([1], np.int64)), idf)                  # [k, 1]
    owner = g.op("Cast", g.op("Equal", g.op("Unsqueeze", "text_ids", g.const([1], np.int64)),
                              g.op("Unsqueeze", g.op("Div", uniq, g.const(spec.buckets, np.int64)),
                                   g.const([0], np.int64))), to=TensorProto.FLOAT)   # [B, k]
    norm = g.op("Sqrt", g.op("MatMul", owner, g.op("Mul", x, x)))                         # [B, 1]
    z = g.op("MatMul", owner, g.op("Mul", x, table))                                       # [B, classes]
    z = g.op("Add", g.op("Div", z, g.op("Max", norm, g.const(np.float32(1e-30), np.float32))),
             g.const(bias, np.float32))
    g.nodes.append(helper.make_node("LogSoftmax", [z], [OUTPUT], name=f"{PREFIX}LogSoftmax", axis=-1))
    return g.nodes, list(g.inits.values())


def graph_inputs_info() -> list[onnx.ValueInfoProto]:
    shapes = {"text_ids": "texts", "chars": "chars", "char_text": "chars", "word_chars": "word_chars",
              "word_pos": "word_chars", "word_ends": "words", "word_lens": "words", "word_text": "words"}
    return [helper.make_tensor_value_info(name, TensorProto.UINT32 if name.endswith("chars") else TensorProto.INT64,
                                          [shapes[name]]) for name in INPUTS]


def expert_model(expert: GoldExpert) -> onnx.ModelProto:
    """The expert alone as an ONNX model (inputs ``INPUTS``, output ``OUTPUT``)."""
    nodes, inits = expert_nodes(expert)
    classes = expert._packed[0].shape[1] - 1
    graph = helper.make_graph(nodes, "gold_expert", graph_inputs_info(),
                              [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["texts", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model



def with_expert(student: onnx.ModelProto, expert: GoldExpert) -> onnx.ModelProto:
    """The student's graph with the expert's nodes added: its inputs plus ``INPUTS``, its outputs plus
    ``OUTPUT``. The default domain's opset is raised to 18 where it is lower (the ops whose meaning changed
    at 18 are the Reduce* family with ``axes`` attributes, Split, Pad, Resize and Scatter*: refused if present,
    so the student's own nodes compute what they computed)."""
    changed = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
               "ReduceLogSumExp", "ReduceSumSquare", "Split", "Pad", "Resize", "ScatterElements", "ScatterND",
               "Col2Im", "CenterCropPad"}
    default = next((o for o in student.opset_import if o.domain in ("", "ai.onnx")), None)
    if default is None:
        raise ValueError("the student graph imports no default-domain opset")
    if default.version < OPSET:
        clash = sorted({n.op_type for n in student.graph.node if n.domain in ("", "ai.onnx")} & changed)
        if clash:
            raise ValueError(f"the student graph (opset {default.version}) has {clash}, whose meaning changed at "
                             f"opset {OPSET}; export it at opset {OPSET} first")
        default.version = OPSET
    taken = {i.name for i in student.graph.input} | {o.name for o in student.graph.output}
    if taken & (set(INPUTS) | {OUTPUT}):
        raise ValueError(f"the student graph already has {sorted(taken & (set(INPUTS) | {OUTPUT}))}")
    model = onnx.ModelProto()
    model.CopyFrom(student)
    nodes, inits = expert_nodes(expert)
    classes = expert._packed[0].shape[1] - 1
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    model.graph.input.extend(graph_inputs_info())
    model.graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["texts", classes]))
    return model


def graph_inputs(texts: list[str]) -> dict[str, np.ndarray]:
    """The inputs of the expert's ONNX nodes (documented above) for a batch:
    each text's code points padded like ``char_wb`` and its ``\\w+`` words (each cut to ``_MAX_WORD``), joined
    over the batch, with the positions and owners that split them again. A dozen numpy calls per batch."""
    lows = [t.lower() for t in texts]
    padded = [" " + "  ".join(w) + " " if (w := t.split()) else "" for t in lows]
    words = [_WORD.findall(t) for t in lows]
    flat = words[0] if len(words) == 1 else [w for ws in words for w in ws]
    lens = np.fromiter(map(len, flat), np.int64, len(flat))
    if len(flat) and lens.max() > _MAX_WORD:
        flat = [w[:_MAX_WORD] for w in flat]
        np.minimum(lens, _MAX_WORD, out=lens)
    ends = np.cumsum(lens)
    chars = np.frombuffer("".join(padded).encode("utf-32-le"), np.uint32)
    ids = np.arange(len(texts), dtype=np.int64)
    if len(texts) == 1:
        char_text, word_text = np.zeros(len(chars), np.int64), np.zeros(len(flat), np.int64)
    else:
        char_text = np.repeat(ids, np.fromiter(map(len, padded), np.int64, len(padded)))
        word_text = np.repeat(ids, np.fromiter(map(len, words), np.int64, len(words)))
    return {"text_ids": ids, "chars": chars, "char_text": char_text,
            "word_chars": np.frombuffer("".join(flat).encode("utf-32-le"), np.uint32),
            "word_pos": np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64) - np.repeat(ends - lens, lens),
            "word_ends": ends, "word_lens": lens, "word_text": word_text}


def merged_session(folder: str | Path):
    """(the folder's classifier, an ONNX Runtime session of its graph with the expert's nodes, 1 thread)."""
    import onnxruntime as ort

    from inference import SentimentClassifier
    from inference.classifier import MODEL_FILE

    clf = SentimentClassifier.load(folder)
    if clf.expert is None:
        raise ValueError(f"{folder}: the folder has no gold expert (expert.npz) to put into its graph")
    merged = with_expert(onnx.load(str(Path(folder) / MODEL_FILE)), clf.expert)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return clf, ort.InferenceSession(merged.SerializeToString(), opts, providers=["CPUExecutionProvider"]), merged


def merged_answer(clf, session, texts: list[str]) -> np.ndarray:
    """What ``clf.logits(texts)`` answers, through the merged graph (one ``session.run`` for both parts)."""
    from inference.expert import fuse

    feeds = graph_inputs(texts)
    feeds["input_ids"], feeds["attention_mask"] = clf.encode(texts)
    logits, expert = session.run(["logits", "expert_log_probs"], feeds)
    out = fuse(logits, expert, clf.expert_weight)
    return out if clf.class_bias is None else out + clf.class_bias


def main(folders: list[str], data_dir: str = "../shared/data/rusentiment", rounds: int = 3) -> None:
    """For each folder: node counts, the merged graph's answers against the folder's, then per text,
    alternating which goes first, medians (batch 1, 1 thread, 570 validation posts after 30 warm-up posts) of
    the public call (numpy expert), the same answer through the merged graph, and tokenizer + the student's
    graph alone (the floor with no expert)."""
    from corpus import load_splits
    from inference.classifier import MODEL_FILE, softmax
    from search.provenance import cpu_info

    texts = list(load_splits(data_dir, seed=13).val.text[:600])
    print(cpu_info())
    for folder in folders:
        clf, session, merged = merged_session(folder)

        def in_graph(t):
            return clf.labels[int(softmax(merged_answer(clf, session, [t]).astype(np.float64)).argmax(1)[0])]

        fns = {"numpy expert (public call)": lambda t: clf(t)["label"], "expert in the graph": in_graph,
               "student alone": lambda t: clf.run(*clf.encode([t]))}
        same = sum(in_graph(t) == clf(t)["label"] for t in texts)
        diff = max(float(np.abs(clf.logits([t]) - merged_answer(clf, session, [t])).max()) for t in texts[:100])
        print(f"{folder}: {len(merged.graph.node)} nodes (student {len(onnx.load(str(Path(folder) / MODEL_FILE)).graph.node)}); "
              f"same label on {same} of {len(texts)}; max |answer difference| {diff:.2e}")
        for rnd in range(rounds):
            times = {k: [] for k in fns}
            for i, t in enumerate(texts):
                for name, fn in (list(fns.items()) if i % 2 else list(fns.items())[::-1]):
                    t0 = time.perf_counter()
                    fn(t)
                    if i >= 30:
                        times[name].append(time.perf_counter() - t0)
            print(f"  round {rnd + 1}: " + "; ".join(f"{k} {np.median(v) * 1e3:.3f} ms" for k, v in times.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
