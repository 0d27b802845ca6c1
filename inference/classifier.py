"""Load an exported model folder (``model.onnx``, ``tokenizer.json``, ``config.json``; ``lexical.npz``
for a student with a KD-trained lexical branch; ``expert.npz`` for one fused with a gold-label lexical
expert, ``inference.expert``) and classify."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from .expert import EXPERT_FILE, Gate, GoldExpert, fuse
from .lexical import LexicalSpec, features, lexical_logits_of

log = logging.getLogger(__name__)
MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE, LEXICAL_FILE = "model.onnx", "tokenizer.json", "config.json", "lexical.npz"
# the shipped student: package data, so any install finds it (a checkout, an editable install, a wheel);
# $RUSENTIMENT_KD_MODEL overrides it
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "rusentiment-student"


def default_model_dir() -> Path:
    return Path(os.environ.get("RUSENTIMENT_KD_MODEL") or DEFAULT_MODEL)
FORMAT = "rusentiment-kd/onnx-classifier"


class ModelFolderError(ValueError):
    """A missing or corrupt exported model folder."""


def clean_text(text: str) -> str:
    """Lone surrogates (possible in a Python str, not in UTF-8) become U+FFFD, three for each (one per byte of the
    surrogate's UTF-8 form); anything else passes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class SentimentClassifier:
    def __init__(self, session, tokenizer, config: dict, path: Path):
        self.session, self.tokenizer, self.config, self.path = session, tokenizer, config, path
        self.labels: list[str] = list(config["labels"])
        self.max_length: int = int(config["max_length"])
        self.prefix: str = config.get("text_prefix", "")
        self.pad_id: int = int(config["pad_id"])
        self.lexical = None  # (table, scale or None, LexicalSpec) when the model has a lexical branch
        self.expert: GoldExpert | None = None  # the gold-label lexical expert, when the folder has one
        self.expert_weight: float = 0.0       # its fusion weight (config.json expert.weight)
        self.gate: Gate | None = None         # the weight's dependence on the text (config.json expert.gate), if any
        self.class_bias: np.ndarray | None = None  # added to the answer (config.json class_bias, fitted on validation)

    @classmethod
    def load(cls, path: str | Path | None = None, threads: int = 1) -> "SentimentClassifier":
        """Load an exported folder; with no path, the shipped default student."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = Path(path) if path is not None else default_model_dir()
        if not path.is_dir():
            raise ModelFolderError(f"{path}: no such model folder; give the folder written by "
                                   f"`python -m analysis.export`")
        for name in (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE):
            if not (path / name).is_file():
                raise ModelFolderError(f"{path}: {name} is missing; re-export the model folder")
        try:
            config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
            if config.get("format") != FORMAT:
                raise ModelFolderError(f"{path / CONFIG_FILE}: format {config.get('format')!r} is not {FORMAT!r}")
            tokenizer = Tokenizer.from_file(str(path / TOKENIZER_FILE))
        except (json.JSONDecodeError, KeyError) as e:
            raise ModelFolderError(f"{path}: config.json is corrupt ({e}); re-export the model folder") from e
        except Exception as e:  # tokenizers raises plain Exception on bad JSON
            if isinstance(e, ModelFolderError):
                raise
            raise ModelFolderError(f"{path / TOKENIZER_FILE}: cannot be read ({e}); re-export the model folder") from e
        tokenizer.no_padding()
        tokenizer.enable_truncation(int(config["max_length"]))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(path / MODEL_FILE), opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelFolderError(f"{path / MODEL_FILE}: not a loadable ONNX model ({e}); re-export it") from e
        clf = cls(session, tokenizer, config, path)
        if config.get("lexical"):
            try:
                with np.load(path / LEXICAL_FILE) as z:
                    clf.lexical = (z["table"], z["scale"] if "scale" in z else None, LexicalSpec(**config["lexical"]))
            except (OSError, KeyError, ValueError, TypeError) as e:
                raise ModelFolderError(f"{path / LEXICAL_FILE}: the lexical branch's table cannot be read ({e}); "
                                       f"re-export the model folder") from e
            if clf.lexical[0].shape != (clf.lexical[2].buckets, len(clf.labels)):
                raise ModelFolderError(f"{path / LEXICAL_FILE}: table shape {clf.lexical[0].shape} does not match "
                                       f"{clf.lexical[2].buckets} buckets x {len(clf.labels)} labels; re-export")
        if config.get("expert"):
            e = config["expert"]
            try:
                spec = LexicalSpec(**{k: e[k] for k in ("buckets", "char_min", "char_max", "word_bigrams")})
                clf.expert = GoldExpert.load(path / EXPERT_FILE, spec)
                clf.expert_weight = float(e.get("weight", 0.0))
                if e.get("gate"):
                    clf.gate = Gate(knee=float(e["gate"]["knee"]), slope=float(e["gate"]["slope"]))
            except (OSError, KeyError, ValueError, TypeError) as err:
                raise ModelFolderError(f"{path / EXPERT_FILE}: the gold expert cannot be read ({err}); "
                                       f"re-export the model folder") from err
            if not 0.0 <= clf.expert_weight <= 1.0:
                raise ModelFolderError(f"{path / CONFIG_FILE}: expert.weight {clf.expert_weight} is not in [0, 1]")
            if clf.gate is not None and not (np.isfinite(clf.gate.knee) and 0.0 <= clf.gate.slope < np.inf):
                raise ModelFolderError(f"{path / CONFIG_FILE}: expert.gate needs a finite knee and a slope >= 0, got "
                                       f"{config['expert']['gate']!r}; re-export the folder")
        if config.get("class_bias"):
            bias = np.asarray(config["class_bias"].get("bias", []), dtype=np.float64)
            if bias.shape != (len(clf.labels),) or not np.isfinite(bias).all():
                raise ModelFolderError(f"{path / CONFIG_FILE}: class_bias.bias must be {len(clf.labels)} finite numbers "
                                       f"(one per label), got {config['class_bias'].get('bias')!r}; re-export the folder")
            clf.class_bias = bias.astype(np.float32)
        return clf

    @property
    def fused(self) -> bool:
        """Whether the answer mixes in the gold expert (a folder with one, at a weight above 0)."""
        return self.expert is not None and self.expert_weight > 0

    def encode(self, texts: list[str], truncated: list | None = None) -> tuple[np.ndarray, np.ndarray]:
        if len(texts) == 1:  # batch 1 (the latency path): no batch machinery, no padding
            e = self.tokenizer.encode(self.prefix + texts[0])
            if truncated is not None:
                truncated.append(bool(e.overflowing))
            ids = np.asarray([e.ids], dtype=np.int64)
            return ids, np.ones_like(ids)
        encs = self.tokenizer.encode_batch([self.prefix + t for t in texts])
        if truncated is not None:
            truncated.extend(bool(e.overflowing) for e in encs)
        width = max(len(e.ids) for e in encs)
        ids = np.full((len(encs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, :len(e.ids)] = e.ids
            mask[i, :len(e.ids)] = 1
        return ids, mask

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]

    def student_logits(self, texts: list[str], batch_size: int = 32, truncated: list | None = None) -> np.ndarray:
        """The student's own logits (the graph, plus the KD-trained lexical branch if any), no expert."""
        return self._scores(texts, batch_size, truncated, fused=False)

    def expert_log_probs(self, texts: list[str], rarity: np.ndarray | None = None) -> np.ndarray | None:
        """The gold expert's calibrated log-probabilities (None for a folder without an expert); ``rarity``
        ([texts], when given) receives each text's rarity (``inference.expert``)."""
        if self.expert is None:
            return None
        return self.expert.log_probs_of([features(clean_text(t), self.expert.spec) for t in texts], rarity)

    def logits(self, texts: list[str], batch_size: int = 32, truncated: list | None = None,
               progress: bool = False) -> np.ndarray:
        """What the model answers, ``batch_size`` texts at a time (memory stays bounded for any number
        of texts): the student's logits, or, for a folder fused with a gold expert, the fused
        log-probabilities ``(1 - w) log_softmax(student) + w log p_expert`` (softmax of either gives the
        probabilities); plus the folder's class bias, when it has one (``config.json`` ``class_bias``).
        ``progress``: log about every 10 % of a large call."""
        out = self._scores(texts, batch_size, truncated, fused=self.fused, progress=progress)
        return out if self.class_bias is None else out + self.class_bias

    def _scores(self, texts, batch_size, truncated, fused: bool, progress: bool = False) -> np.ndarray:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out, step = [], max(batch_size, len(texts) // 10)
        for i in range(0, len(texts), batch_size):
            batch = [clean_text(t) for t in texts[i:i + batch_size]]
            if progress and i and i // step != (i - batch_size) // step:
                log.info("classified %d of %d texts", i, len(texts))
            logits = self.run(*self.encode(batch, truncated))
            feats = None
            if self.lexical is not None:
                table, scale, spec = self.lexical
                feats = [features(t, spec) for t in batch]
                logits = logits + lexical_logits_of(table, feats, scale)
            if fused:
                same = feats is not None and self.lexical[2] == self.expert.spec  # n-grams once for both parts
                ids = feats if same else [features(t, self.expert.spec) for t in batch]
                if self.gate is None:
                    logits = fuse(logits, self.expert.log_probs_of(ids), self.expert_weight)
                else:
                    rarity = np.empty(len(ids), np.float32)
                    expert = self.expert.log_probs_of(ids, rarity)
                    logits = fuse(logits, expert, self.gate.weights(self.expert_weight, rarity))
            out.append(logits)
        if len(out) == 1:
            return out[0]
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def __call__(self, texts, top_k: int | None = None, batch_size: int = 32, progress: bool = False):
        """``{"label", "score"}`` per text (a list in gives a list out); ``top_k``: the k best as a list.
        Texts longer than the model's max length are truncated, marked ``"truncated": True``."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        bad = [i for i, t in enumerate(batch) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"texts must be strings; item {bad[0]} is {type(batch[bad[0]]).__name__}")
        truncated: list[bool] = []
        probs = softmax(self.logits(batch, batch_size, truncated, progress).astype(np.float64))
        if any(truncated):
            log.info("%d of %d texts were longer than %d tokens and were truncated", sum(truncated), len(batch),
                     self.max_length)
        if top_k is None:  # argmax, not a sort: this is on the per-text latency path
            results = [{"label": self.labels[j], "score": float(p[j])} for j, p in zip(probs.argmax(1).tolist(), probs)]
            for r, cut in zip(results, truncated):
                if cut:
                    r["truncated"] = True
        else:
            results = [[{"label": self.labels[j], "score": float(p[j])} for j in order[:top_k]]
                       for order, p in zip(np.argsort(-probs, axis=1).tolist(), probs)]
        return results[0] if single else results
