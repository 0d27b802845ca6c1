"""Ray Tune trainable for one student: KD from cached teacher logits -> int8 PTQ -> CPU benchmark.

A student is cut from the teacher (``init="pruned"``: ``modeling.prune``), or built new with the
teacher's embeddings projected (``"teacher"``) or at random; it may carry a lexical branch
(hashed n-grams, ``inference.lexical``). An epoch is every labelled post plus
``transfer_ratio`` x as many posts drawn from the chosen teacher-labelled transfer sets. After
every quarter epoch (a "round") it reports fp32 validation metrics (ASHA's) and int8 ones: the int8
export and validation run at ASHA's rungs and the last round (``ptq_rungs``; every round when 0), so
a trial stopped at a rung or finished ends with its own int8 result; latency and size depend only on
the architecture and are measured once, at the first int8 export, by the serialised benchmark actor.
"""
from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from corpus import encode_texts
from corpus.cache import cache_root
from modeling import ClassifierConfig, EncoderClassifier, classification_metrics
from modeling.metrics import FidelitySlice, fidelity_keys, folder_fidelity
from inference.lexical import LexicalSpec, batch_features
from modeling.onnx_export import export_folder
from modeling.prune import PruneShape, prune_encoder
from modeling.vocab import choose_kept_ids, piece_counts, trim_tokenizer
from spaces.student import StudentConfig, fit_vocab

from .distill import DistillHeads, TokenTeacher, fuse_log_probs, kd_loss, layer_map
from .metrics import BENCH_KEYS, FP32_BENCH_KEYS, OBJECTIVES

from .device import autocast_context, training_attention, training_device, uses_bf16
from .loop import collate, length_batches, linear_warmup_decay, optimizer_step, predict_logits, steps_per_epoch
from .worker import setup_worker_logging, write_folder

log = logging.getLogger(__name__)


@dataclass
class StudentData:
    """Shared by every trial; shipped through Ray's object store, so a trial on any node of a
    cluster has all it needs (no shared file system assumed)."""
    teacher_files: dict  # the fine-tuned teacher classifier folder, relative path -> bytes
    train_texts: list[str]
    train_labels: np.ndarray
    train_logits: np.ndarray
    val_texts: list[str]
    val_labels: np.ndarray
    train_pooled: np.ndarray | None = None  # teacher's pooled features (float16), for feature KD
    train_layers: np.ndarray | None = None  # teacher's mean-pooled layer outputs [posts, layers, hidden], hidden KD
    transfer: dict = field(default_factory=dict)  # recipe -> (texts, teacher logits, teacher pooled features)
    importance: dict | None = None  # the teacher's activation statistics (modeling.prune.importance), for "pruned"
    lexical: dict = field(default_factory=dict)  # lexical buckets -> block ("train" or a transfer recipe) ->
    # batch_features of its texts: computed once for the search (lexical_features), not in every trial
    experts: dict = field(default_factory=dict)  # expert buckets -> (GoldExpert, its validation log-probs, fit record):
    # the gold-label lexical experts, fitted once for the search (search.student_stage.fit_experts)
    expert_pool: dict = field(default_factory=dict)  # expert buckets -> block ("train" or a transfer recipe) -> the
    # expert's log-probabilities of its texts (cross-fitted on the labelled posts), for fused training (fused_weight)
    fidelity: FidelitySlice | None = None  # held-out unlabelled texts and the teacher's logits (corpus.fidelity)
    gate_texts: tuple[list[str], np.ndarray] | None = None  # teacher-labelled real transfer texts (texts, logits):
    # what the expert's text-dependent weight is fitted on (modeling.expert.choose_gate); None: no gate

    def lexical_features(self, buckets: tuple[int, ...]) -> None:
        """Compute, once, the lexical branch's features of every block for each bucket count."""
        for b in buckets:
            spec = LexicalSpec(buckets=b)
            self.lexical[b] = {name: batch_features(texts, spec) for name, texts in self._blocks().items()}

    def expert_log_probs(self, buckets: int, transfer: str) -> np.ndarray:
        """The gold expert's log-probabilities of ``pool(transfer)``'s texts, in its order."""
        blocks = self.expert_pool.get(buckets)
        if blocks is None:
            raise ValueError(f"fused_weight > 0 needs the expert's log-probabilities of the pool (expert_buckets="
                             f"{buckets}); the search computes them when the space offers a fused weight > 0")
        names = ["train"] + ([] if transfer == "none" else transfer.split("+"))
        return np.concatenate([blocks[n] for n in names])

    def _blocks(self) -> dict[str, list[str]]:
        return {"train": self.train_texts, **{recipe: t[0] for recipe, t in self.transfer.items()}}

    def lexical_pool(self, transfer: str, spec: LexicalSpec) -> LexicalPool:
        """The lexical features of ``pool(transfer)``'s texts, in its order (precomputed blocks when
        ``lexical_features`` ran for this spec)."""
        cached = self.lexical.get(spec.buckets, {}) if spec == LexicalSpec(buckets=spec.buckets) else {}
        blocks = self._blocks()
        names = ["train"] + ([] if transfer == "none" else transfer.split("+"))
        return LexicalPool.join([cached[n] if n in cached else batch_features(blocks[n], spec) for n in names])

    def pool(self, transfer: str):
        """(texts, hard labels with -1 for teacher-labelled posts, teacher logits, teacher features)
        of the labelled posts plus the transfer sets named in ``transfer`` ("none" or "a+b")."""
        texts, labels, logits = list(self.train_texts), [self.train_labels], [self.train_logits]
        pooled = [self.train_pooled] if self.train_pooled is not None else None
        for recipe in ([] if transfer == "none" else transfer.split("+")):
            if recipe not in self.transfer:
                raise ValueError(f"transfer set {recipe!r} was not built for this search; built: "
                                 f"{', '.join(self.transfer) or 'none'}")
            t_texts, t_logits, t_pooled = self.transfer[recipe]
            texts += t_texts
            labels.append(np.full(len(t_texts), -1, dtype=self.train_labels.dtype))
            logits.append(t_logits)
            if pooled is not None and t_pooled is not None:
                pooled.append(t_pooled)
            else:  # a set labelled without features (e.g. by an ensemble): no feature KD on this pool
                pooled = None
        return (texts, np.concatenate(labels), np.concatenate(logits),
                None if pooled is None else np.concatenate(pooled))


def student_config(config: dict, base: StudentConfig) -> StudentConfig:
    """A trial's student: ``base`` (the settings the search does not sample) with the sampled values
    (``config``: Optuna's point; keys that are not StudentConfig fields, e.g. ``ffn_ratio``, ignored)."""
    return replace(base, **{k: v for k, v in config.items() if k in StudentConfig.__dataclass_fields__})


def _pca_projection(table: torch.Tensor, dim: int) -> torch.Tensor:
    """[d_in, dim]: the top principal directions of ``table`` rows (filled orthogonally when there
    are fewer rows than directions; zero columns beyond d_in when the student is wider)."""
    d_in = table.shape[1]
    centred = table - table.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred.float(), full_matrices=False)
    # each direction's sign fixed by its largest component (as sklearn's svd_flip): LAPACK may return either sign,
    # and a flipped direction sends training elsewhere, so a seeded trial would not repeat
    v = v * torch.sign(v.gather(1, v.abs().argmax(1, keepdim=True)))
    proj = v[:min(dim, d_in)].T
    if proj.shape[1] < min(dim, d_in):  # fewer rows than dimensions (tiny vocabularies): fill orthogonally
        extra = torch.linalg.qr(torch.randn(d_in, d_in))[0]
        extra = extra - proj @ (proj.T @ extra)
        proj = torch.cat([proj, torch.linalg.qr(extra)[0][:, : min(dim, d_in) - proj.shape[1]]], 1)
    if dim > d_in:
        proj = torch.cat([proj, torch.zeros(d_in, dim - d_in)], 1)
    return proj.contiguous()


def build_student(cfg: StudentConfig, teacher: EncoderClassifier, teacher_tok, train_texts, cache_dir,
                  importance: dict | None = None):
    """(student, tokenizer): vocabulary = the ``cfg.vocab`` most frequent training pieces."""
    from transformers import BertConfig, BertModel

    tc = teacher.config
    enc = encode_texts(train_texts, teacher_tok, cfg.max_length, tc.text_prefix, cache_dir)
    counts = piece_counts(enc, len(teacher_tok))
    seen = int((counts > 0).sum()) + len(teacher_tok.all_special_ids)
    vocab = fit_vocab(cfg, seen)
    if vocab != (cfg.vocab or vocab):  # fewer pieces seen than asked for, or cut to the size limit
        log.info("vocabulary %d -> %d pieces (%d seen in the training posts; size limit: %s MiB)", cfg.vocab, vocab,
                 seen, "none" if cfg.max_size_mib is None else f"{cfg.max_size_mib:g}")
    keep = choose_kept_ids(counts, teacher_tok, vocab)
    tokenizer = trim_tokenizer(teacher_tok, keep)
    lexical = LexicalSpec(buckets=cfg.lexical_buckets).to_dict() if cfg.lexical_buckets else None
    if cfg.init == "pruned":
        if importance is None:
            raise ValueError("init 'pruned' needs the teacher's activation statistics (StudentData.importance); "
                             "search/run.py computes them when the space offers 'pruned'")
        bert, channels = prune_encoder(teacher.encoder, importance, PruneShape(cfg.layers, cfg.hidden, cfg.heads, cfg.ffn),
                                       keep, cfg.max_length, tokenizer.pad_token_id, cfg.dropout, cfg.attention_dropout)
        model = EncoderClassifier(bert, ClassifierConfig(labels=tc.labels, pooling=tc.pooling, dropout=cfg.dropout,
                                                         text_prefix=tc.text_prefix, max_length=cfg.max_length,
                                                         lexical=lexical))
        with torch.no_grad():
            model.head.weight.copy_(teacher.head.weight[:, channels])
            model.head.bias.copy_(teacher.head.bias)
        return model, tokenizer
    bert = BertModel(BertConfig(
        vocab_size=len(keep), hidden_size=cfg.hidden, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
        intermediate_size=cfg.ffn, max_position_embeddings=cfg.max_length, type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id, hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.attention_dropout,
    ), add_pooling_layer=False)
    if cfg.init == "teacher":
        _init_from_teacher(bert, teacher.encoder, keep, cfg)
    model = EncoderClassifier(bert, ClassifierConfig(labels=tc.labels, pooling="mean", dropout=cfg.dropout,
                                                     text_prefix=tc.text_prefix, max_length=cfg.max_length,
                                                     lexical=lexical))
    return model, tokenizer


@torch.no_grad()
def _init_from_teacher(student, teacher, keep: np.ndarray, cfg: StudentConfig) -> None:
    te, se = teacher.embeddings, student.embeddings
    words = te.word_embeddings.weight[torch.as_tensor(keep)]
    pos = te.position_embeddings.weight[: cfg.max_length]
    typ = te.token_type_embeddings.weight[:1]
    same_width = cfg.hidden == teacher.config.hidden_size
    if same_width:
        se.LayerNorm.load_state_dict(te.LayerNorm.state_dict())
    else:
        proj = _pca_projection(words, cfg.hidden)
        words, pos, typ = words @ proj, pos @ proj, typ @ proj
    se.word_embeddings.weight.copy_(words)
    se.position_embeddings.weight.copy_(pos)
    se.token_type_embeddings.weight.copy_(typ)
    tcfg = teacher.config
    if same_width and cfg.heads == tcfg.num_attention_heads and cfg.ffn == tcfg.intermediate_size:
        for i in range(min(cfg.layers, tcfg.num_hidden_layers)):
            student.encoder.layer[i].load_state_dict(teacher.encoder.layer[i].state_dict())


def epoch_batches(n_labelled: int, n_pool: int, draws: int, lengths: np.ndarray, batch_size: int,
                  rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches of pool rows: every labelled row (the first ``n_labelled``) plus ``draws``
    rows drawn without replacement from the transfer rows after them."""
    draws = min(n_pool - n_labelled, draws)
    rows = np.arange(n_labelled)
    if draws > 0:
        rows = np.concatenate([rows, n_labelled + rng.choice(n_pool - n_labelled, draws, replace=False)])
    return [rows[b] for b in length_batches(lengths[rows], batch_size, rng)]


class LexicalPool:
    """Every pool text's hashed n-gram ids (``batch_features`` layout); ``batch(index)`` gives EmbeddingBag inputs."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, weights: np.ndarray):
        self.ids, self.weights = ids, weights
        self.bounds = np.r_[offsets, len(ids)]

    @classmethod
    def join(cls, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> "LexicalPool":
        """One pool of consecutive blocks of texts, each given as ``batch_features`` output."""
        starts = np.cumsum([0] + [len(ids) for ids, _, _ in parts[:-1]])
        return cls(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] + s for p, s in zip(parts, starts)]),
                   np.concatenate([p[2] for p in parts]))

    def batch(self, index: np.ndarray) -> tuple[torch.Tensor, ...]:
        parts = [np.arange(self.bounds[i], self.bounds[i + 1]) for i in index]
        pick = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        offsets = np.r_[0, np.cumsum([len(p) for p in parts])[:-1]].astype(np.int64)
        return torch.from_numpy(self.ids[pick]), torch.from_numpy(offsets), torch.from_numpy(self.weights[pick])


def param_groups(model: EncoderClassifier, extra: list, cfg: StudentConfig) -> list[dict]:
    """AdamW groups: the lexical branch's table learns at ``cfg.lexical_lr`` (a linear model on sparse
    features wants a larger step than the transformer), everything else at ``cfg.lr``."""
    lexical = [model.lexical.weight] if model.lexical is not None else []
    rest = [p for n, p in model.named_parameters() if not n.startswith("lexical.")] + extra
    groups = [{"params": rest, "lr": cfg.lr}]
    if lexical:
        groups.append({"params": lexical, "lr": cfg.lexical_lr})
    return groups


class RayReporter:
    """A trial's link to Ray Tune: the checkpoint to resume from, reports, the serialised benchmark."""

    def __init__(self):
        import ray
        from ray import tune

        self.tune, self.node_id = tune, ray.get_runtime_context().get_node_id()

    def restore(self) -> dict | None:
        checkpoint = self.tune.get_checkpoint()
        if not checkpoint:
            return None
        with checkpoint.as_directory() as d:
            return torch.load(Path(d) / "train_state.pt", weights_only=False)

    def report(self, metrics: dict, folder: Path) -> None:
        self.tune.report(metrics, checkpoint=self.tune.Checkpoint.from_directory(str(folder)))

    def benchmark(self, folder: Path, texts: list[str], n_latency: int) -> dict:
        from .bench_slot import benchmark_serialised

        return benchmark_serialised(folder, texts, n_latency)


class FolderReporter:
    """The same for a run outside Ray (``studies/train_students.py``, e.g. on a GPU machine without
    Ray): each round's checkpoint replaces the last in ``out/checkpoint``, metrics go to
    ``out/metrics.jsonl``; the benchmark runs in place."""

    def __init__(self, out: Path):
        self.out, self.node_id = Path(out), "local"
        self.out.mkdir(parents=True, exist_ok=True)

    def restore(self) -> dict | None:
        state = self.out / "checkpoint" / "train_state.pt"
        return torch.load(state, weights_only=False) if state.is_file() else None

    def report(self, metrics: dict, folder: Path) -> None:
        import json

        from inference.atomic import atomic_directory

        with atomic_directory(self.out / "checkpoint") as tmp:
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics, default=str) + "\n")
        log.info("round %s: val wF1 %.4f, int8 %s", metrics["round"], metrics["val_weighted_f1"],
                 "not yet (no rung)" if np.isnan(metrics["int8_val_weighted_f1"]) else f"{metrics['int8_val_weighted_f1']:.4f}")

    def benchmark(self, folder: Path, texts: list[str], n_latency: int) -> dict:
        from inference.benchmark import benchmark

        return benchmark(folder, texts, n_latency)


def train_student(config: dict, data: StudentData, base: StudentConfig) -> None:
    """The Ray Tune function trainable: ``base`` (``tune.with_parameters``) holds the settings the
    search does not sample; the trial's full StudentConfig is recorded in its exported
    ``config.json`` (provenance.student)."""
    from trainables.quiet import quiet_known_warnings

    quiet_known_warnings(worker=True)
    fit_student(student_config(config, base), data, RayReporter())


def fit_student(cfg: StudentConfig, data: StudentData, reporter) -> None:
    """KD -> int8 PTQ -> benchmark, reporting after every round through ``reporter``
    (``RayReporter`` in a search, ``FolderReporter`` outside Ray). Trains on ``cfg.device``;
    export, int8 evaluation and the benchmark always run on CPU."""
    setup_worker_logging()
    t_build = time.time()
    run = StudentRun.build(cfg, data)
    state = reporter.restore()
    if state:
        run.load_state_dict(state)
    build_s, n_rounds = time.time() - t_build, cfg.epochs * cfg.evals_per_epoch
    with tempfile.TemporaryDirectory(prefix="student-int8-") as keep:  # the last int8 export, between rungs
        int8 = Int8Rounds(run, Path(keep) / "model", reporter)
        while run.round < n_rounds:
            t0 = time.time()
            losses = run.train_round()
            train_s = time.time() - t0
            with tempfile.TemporaryDirectory() as d:  # becomes the round's checkpoint
                metrics = int8.evaluate_round(Path(d) / "model", n_rounds)
                metrics.update(round=run.round, epoch=run.round / cfg.evals_per_epoch, params=run.params,
                               train_pool=len(run.train), epoch_posts=run.n_labelled + run.draws,
                               node_id=reporter.node_id, device=run.device.type, vocab_size=len(run.tokenizer),
                               train_loss=float(np.mean(losses)), round_train_s=train_s, build_s=build_s)
                run.model.save(Path(d) / "torch", run.tokenizer)  # fp32 student (saved from any device), for the report
                torch.save(run.state_dict(), Path(d) / "train_state.pt")
                reporter.report(metrics, Path(d))


@dataclass
class StudentRun:
    """One student's training: the model, its distillation heads, the encoded pool and validation posts, the
    optimizer and the sampling state; ``train_round`` advances it a round, ``state_dict``/``load_state_dict``
    checkpoint it."""
    cfg: StudentConfig
    data: StudentData
    device: torch.device
    model: EncoderClassifier
    tokenizer: object
    heads: DistillHeads
    token_teacher: TokenTeacher | None
    expert: tuple | None          # (GoldExpert, its validation log-probs, fit record)
    expert_pool: torch.Tensor | None  # the expert's log-probs of the pool's posts: fused training (fused_weight > 0)
    train: object                 # corpus.encode.Encoded: the pool (labelled posts first, then transfer posts)
    val: object
    lex_pool: LexicalPool | None
    labels: torch.Tensor
    t_logits: torch.Tensor
    t_feats: torch.Tensor | None
    t_layers: torch.Tensor | None
    draws: int                    # transfer posts drawn per epoch
    per_round: int                # optimizer steps per round
    optimizer: torch.optim.Optimizer
    scheduler: object
    rng: np.random.Generator
    params: int
    batches: list = field(default_factory=list)
    round: int = 0
    bench: dict = field(default_factory=dict)

    @property
    def n_labelled(self) -> int:
        return len(self.data.train_texts)

    @classmethod
    def build(cls, cfg: StudentConfig, data: StudentData) -> StudentRun:
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        device = training_device(cfg.device != "cpu")
        if cfg.device == "cuda" and device.type != "cuda":
            raise ValueError("device 'cuda': torch sees no CUDA device here; use 'auto' or 'cpu'")
        cache_dir = cache_root() / "encoded"  # this node's own token cache
        with tempfile.TemporaryDirectory() as d:
            teacher, teacher_tok = EncoderClassifier.load(write_folder(data.teacher_files, Path(d)))
        model, tokenizer = build_student(cfg, teacher, teacher_tok, data.train_texts, cache_dir, data.importance)
        token_teacher = TokenTeacher(teacher, teacher_tok, tokenizer, cfg, device) if cfg.token_kd > 0 else None
        del teacher
        if cfg.expert_buckets and cfg.expert_buckets not in data.experts:
            raise ValueError(f"expert_buckets={cfg.expert_buckets}: no gold expert of that size was fitted for this "
                             f"search (fitted: {sorted(data.experts) or 'none'})")
        texts, hard, soft, feats = data.pool(cfg.transfer)
        prefix = model.config.text_prefix
        train = encode_texts(texts, tokenizer, cfg.max_length, prefix, cache_dir)
        val = encode_texts(data.val_texts, tokenizer, cfg.max_length, prefix, cache_dir)
        lex_pool = (data.lexical_pool(cfg.transfer, LexicalSpec(**model.config.lexical))
                    if model.lexical is not None else None)
        params = int(sum(p.numel() for p in model.parameters()))
        if cfg.feature_kd > 0 and feats is None:
            raise ValueError("feature_kd > 0 needs the teacher's pooled features (teacher/pooled_train.npy) on every "
                             "post of the pool; sets labelled by an ensemble carry none")
        if cfg.hidden_kd > 0 and data.train_layers is None:
            raise ValueError("hidden_kd > 0 needs the teacher's layer outputs (teacher/layers_train.npy); "
                             "search/run.py builds them when --hidden-kd has a weight > 0")
        mapped = layer_map(cfg.layers, data.train_layers.shape[1]) if cfg.hidden_kd > 0 else []
        t_layers = torch.as_tensor(np.ascontiguousarray(data.train_layers[:, mapped])) if mapped else None
        heads = DistillHeads(cfg, feats.shape[1] if cfg.feature_kd > 0 else None, len(mapped),
                             t_layers.shape[2] if mapped else None, token_teacher.width if token_teacher else None)
        model.to(device)
        heads.to(device)
        optimizer = torch.optim.AdamW(param_groups(model, list(heads.parameters()), cfg), lr=cfg.lr,
                                      weight_decay=cfg.weight_decay)
        # an epoch: every labelled post + transfer_ratio x as many transfer draws (none without transfer sets)
        n_labelled = len(data.train_texts)
        draws = 0 if cfg.transfer == "none" else min(len(train) - n_labelled, round(cfg.transfer_ratio * n_labelled))
        per_round = max(1, steps_per_epoch(n_labelled + draws, cfg.batch_size) // cfg.evals_per_epoch)
        total = per_round * cfg.evals_per_epoch * cfg.epochs
        scheduler = linear_warmup_decay(optimizer, int(cfg.warmup_ratio * total), total)
        expert_pool = (torch.as_tensor(data.expert_log_probs(cfg.expert_buckets, cfg.transfer), device=device)
                       if cfg.fused_weight > 0 else None)
        return cls(cfg, data, device, model, tokenizer, heads, token_teacher,
                   data.experts.get(cfg.expert_buckets) if cfg.expert_buckets else None, expert_pool, train, val, lex_pool,
                   torch.as_tensor(hard, device=device), torch.as_tensor(soft, device=device),
                   torch.as_tensor(feats, device=device) if cfg.feature_kd > 0 else None, t_layers, draws, per_round,
                   optimizer, scheduler, np.random.default_rng(cfg.seed), params)

    def train_round(self) -> list[float]:
        """``per_round`` optimizer steps; the losses."""
        self.model.train()
        with training_attention(self.model.encoder, uses_bf16(self.cfg.bf16, self.device.type), self.device.type):
            losses = [self.step(self.next_batch()) for _ in range(self.per_round)]
        self.round += 1
        return losses

    def next_batch(self) -> np.ndarray:
        """The next batch of pool rows (a new epoch's batches drawn when the last ones are used up)."""
        if not self.batches:
            self.batches = epoch_batches(self.n_labelled, len(self.train), self.draws, self.train.lengths(),
                                         self.cfg.batch_size, self.rng)
        return self.batches.pop()

    def step(self, index: np.ndarray) -> float:
        """One optimizer step on pool rows ``index`` (the model in training mode, its attention set by
        ``training_attention``); the loss."""
        cfg, device = self.cfg, self.device
        ids, mask = (t.to(device) for t in collate(self.train, index, self.tokenizer.pad_token_id))
        lex = tuple(t.to(device) for t in self.lex_pool.batch(index)) if self.lex_pool else None
        with autocast_context(cfg.bf16, device.type):
            logits, pooled, *layers = self.model(ids, mask, return_pooled=True, lexical=lex,
                                                 return_layers=self.heads.hidden is not None,
                                                 return_tokens=self.heads.token is not None)
            tokens = layers.pop() if self.heads.token is not None else None
            logits, pooled = logits.float(), pooled.float()
            layers = [x.float() for x in layers]
            token_term = self.heads.token_term(tokens, self.token_teacher, ids, mask)
        if self.expert_pool is not None:  # trained inside the fusion: the loss sees what the fused model answers
            logits = fuse_log_probs(logits, self.expert_pool[index], cfg.fused_weight)
        kd = kd_loss(logits, self.t_logits[index], self.labels[index], cfg.kd_alpha, cfg.kd_temperature)
        loss = self.heads.loss(kd, pooled, layers, token_term, index, self.n_labelled, self.t_feats, self.t_layers)
        return optimizer_step(self.model, loss, self.optimizer, self.scheduler)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "heads": self.heads.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "batches": self.batches, "rng": self.rng, "round": self.round, "bench": self.bench}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.heads.load_state_dict(DistillHeads.from_checkpoint(state))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.rng, self.round, self.bench, self.batches = state["rng"], state["round"], state["bench"], state["batches"]


class Int8Rounds:
    """Each round's evaluation, and the int8 rule: fp32 validation every round; at ASHA's rungs and the last
    round (``int8_due``) an int8 export validated by the torch-free runtime; between rungs the last int8 folder
    and figures stand (ASHA decides on fp32); before the first rung there is no int8 model (NaN figures). The
    first int8 folder is benchmarked once (``measure``)."""

    def __init__(self, run: StudentRun, keep: Path, reporter):
        self.run, self.keep, self.reporter = run, keep, reporter
        self.last: dict | None = None  # the last int8 round's figures

    def evaluate_round(self, folder: Path, n_rounds: int) -> dict:
        """The round's metrics; ``folder`` receives the int8 model of this round's checkpoint (when there is one)."""
        run, cfg = self.run, self.run.cfg
        metrics, fp32 = validate_fp32(run.model, run.val, run.tokenizer.pad_token_id, run.data, run.expert)
        t1 = time.time()
        if int8_due(run.round, n_rounds, cfg.ptq_rungs, cfg.ptq_grace):
            export_onnx(run.model, run.tokenizer, cfg, folder, expert=run.expert)
            self.last = {**validate_int8(folder, run.data, cfg, fp32, run.expert), "int8_round": run.round}
            shutil.rmtree(self.keep, ignore_errors=True)
            shutil.copytree(folder, self.keep)
        elif self.last is not None:
            shutil.copytree(self.keep, folder)
        # before the first rung (grace > 1, or a resumed trial) there is no int8 model yet: none is exported,
        # validated or benchmarked for a round no scheduler decision reads
        metrics.update(self.last if self.last else unmeasured(run.data, run.expert), ptq_eval_s=time.time() - t1)
        if self.last is not None:
            weight = self.last.get("expert_weight", 0.0)
            run.bench = run.bench or measure(folder, run.data, self.reporter, cfg.bench_texts, fp32=lambda out: export_onnx(
                run.model, run.tokenizer, cfg, out, "fp32", run.expert, weight))
        metrics.update(run.bench)
        return metrics


def int8_due(round_: int, n_rounds: int, rungs: int, grace: int = 1) -> bool:
    """Whether round ``round_`` (1-based) exports and validates int8: every round when ``rungs`` is 0,
    else ASHA's rungs for that reduction factor and grace period (g, g*k, g*k^2, ...) and the last round."""
    if rungs == 0 or round_ == n_rounds:
        return True
    if round_ % grace:
        return False
    r = round_ // grace
    while r % rungs == 0:
        r //= rungs
    return r == 1


def unmeasured(data: StudentData, expert=None) -> dict:
    """NaN for every key a round with an int8 model reports (int8 metrics, benchmark, fidelity), for the rounds
    before the first rung: every round of a trial reports the same keys. Ray's CSV logger fixes ``progress.csv``'s
    columns from a trial's first result (later keys are dropped, and a resumed trial appends rows of another
    width), and its strict metric check wants the searcher's OBJECTIVES in every result."""
    blank = np.zeros((len(data.val_labels), data.train_logits.shape[1]), dtype=np.float32)
    metrics, _ = fused_metrics(blank, data, expert, "int8_")
    if expert is not None:
        metrics["expert_weight"] = metrics.pop("int8_expert_weight")
        metrics.update(gate_slope=None, gate_knee=None)  # NaN below, like every key
    keys = [*metrics, "int8_fp32_agreement", "int8_round", *BENCH_KEYS, *(f"fp32_{k}" for k in FP32_BENCH_KEYS),
            *fidelity_keys(data.fidelity), *(["fidelity_s"] if data.fidelity is not None else [])]
    assert set(OBJECTIVES) <= set(keys)
    return dict.fromkeys(keys, float("nan"))


def fused_metrics(student_logits: np.ndarray, data: StudentData, expert, prefix: str) -> tuple[dict, np.ndarray]:
    """Validation metrics of the student alone (``<prefix>student_*``) and, with a gold expert, of the
    fused model at the weight chosen on validation (``modeling.expert.choose_weight``, rule "nll"):
    ``<prefix>*`` are the figures of what the folder answers (fused when there is an expert) and
    ``<prefix>expert_weight`` its weight. Returns (metrics, the student's own predictions)."""
    from modeling.expert import choose_weight
    from inference.expert import fuse

    own = student_logits.argmax(1)
    alone = classification_metrics(data.val_labels, own, prefix=f"{prefix}val_")
    out = {f"{prefix}student_{k[len(prefix):]}": v for k, v in alone.items()}
    if expert is None:
        return {**out, **alone}, own
    gold, val_log_probs, _ = expert
    weight, _ = choose_weight(student_logits, val_log_probs, data.val_labels, "nll")
    fused = fuse(student_logits, val_log_probs, weight).argmax(1)
    return {**out, **classification_metrics(data.val_labels, fused, prefix=f"{prefix}val_"),
            f"{prefix}expert_weight": weight}, own


def validate_fp32(model, val, pad, data: StudentData, expert=None) -> tuple[dict, np.ndarray]:
    """fp32 validation metrics (ASHA's: the fused model's when the trial has a gold expert) and the
    student's own predictions, on the model's device."""
    logits = predict_logits(model, val, pad, bf16="off", texts=data.val_texts)
    metrics, own = fused_metrics(logits, data, expert, "")
    if "expert_weight" in metrics:  # the folder's weight is the one chosen on int8 logits (validate_int8)
        metrics["fp32_expert_weight"] = metrics.pop("expert_weight")
    return metrics, own


def export_onnx(model, tokenizer, cfg: StudentConfig, out: Path, form: str = "int8", expert=None,
                weight: float = 0.0) -> Path:
    """The one export path (ONNX -> fusions -> ``form``: dynamic int8, or fp32 for the benchmark of
    that form), from a CPU copy of a GPU model; the folder records the trial's StudentConfig and, with
    ``expert`` ((GoldExpert, val log-probs, fit record)), carries the gold expert at ``weight``."""
    model = copy.deepcopy(model).cpu() if next(model.parameters()).is_cuda else model
    gold, info = (None, None) if expert is None else (expert[0], {"weight": weight, "fit": expert[2]})
    return export_folder(model, tokenizer, out, quantize=form, provenance={"student": asdict(cfg)},
                         expert=gold, expert_info=info)


def validate_int8(folder: Path, data: StudentData, cfg: StudentConfig, fp32: np.ndarray, expert=None) -> dict:
    """int8 validation metrics of the exported folder, run by the torch-free runtime (the fused
    model's, with the weight chosen on these int8 logits and, with ``cfg.expert_gate``, the text-dependent weight
    fitted on teacher-labelled transfer text, both written into the folder's config.json), the agreement of the
    student's own int8 and fp32 predictions, and the folder's fidelity to the teacher on the held-out slice."""
    from inference import SentimentClassifier
    from modeling.expert import set_weight

    clf = SentimentClassifier.load(folder, threads=cfg.threads)
    logits = clf.student_logits(data.val_texts, 64)
    metrics, own = fused_metrics(logits, data, expert, "int8_")
    if expert is not None:
        weight = metrics.pop("int8_expert_weight")
        gate, rarity = fit_gate(clf, data, weight) if cfg.expert_gate and weight > 0 and data.gate_texts else (None, None)
        set_weight(folder, weight, gate=gate)
        metrics.update(expert_weight=weight, gate_slope=gate.slope if gate else 0.0,
                       gate_knee=gate.knee if gate else float("nan"))
        if gate is not None and gate.slope > 0:  # what the folder answers on validation: the gated fusion
            from inference.expert import fuse

            answer = fuse(logits, expert[1], gate.weights(weight, rarity)).argmax(1)
            metrics.update(classification_metrics(data.val_labels, answer, prefix="int8_val_"))
    out = {**metrics, "int8_fp32_agreement": float((own == fp32).mean())}
    if data.fidelity is not None:
        out.update(folder_fidelity(folder, data.fidelity, cfg.threads))
    return out


def fit_gate(clf, data: StudentData, weight: float):
    """The expert's text-dependent weight for this student (``modeling.expert.choose_gate``): knee from the
    validation posts' rarity, slope from the teacher's answers on ``data.gate_texts``; returns the gate and the
    validation posts' rarity."""
    from modeling.expert import choose_gate

    texts, teacher_logits = data.gate_texts
    rarity, val_rarity = np.empty(len(texts), np.float32), np.empty(len(data.val_texts), np.float32)
    clf.expert_log_probs(data.val_texts, val_rarity)
    expert = clf.expert_log_probs(texts, rarity)
    gate, rows = choose_gate(clf.student_logits(texts, 64), expert, rarity, weight, teacher_logits, val_rarity)
    log.info("expert gate: knee %.3f slope %.2f (KL to the teacher on %d transfer texts %.4f; slope 0: %.4f)",
             gate.knee, gate.slope, len(texts), rows[gate.slope]["kl"], rows[0.0]["kl"])
    return gate, val_rarity


def measure(folder: Path, data: StudentData, reporter, n_latency: int, fp32=None) -> dict:
    """The CPU benchmark over ``n_latency`` texts (``StudentConfig.bench_texts``; once per trial: latency and size
    depend on the architecture only) of the int8
    folder and, when ``fp32`` (out -> an fp32 ONNX folder) is given, of the fp32 form too
    (``fp32_``-prefixed keys): which form is faster depends on the CPU (``analysis.export
    --quantization fp32`` exports it)."""
    t0 = time.time()
    bench = reporter.benchmark(folder, data.val_texts, n_latency)
    out = {k: bench[k] for k in BENCH_KEYS if k in bench}
    if fp32 is not None:
        with tempfile.TemporaryDirectory() as d:
            plain = reporter.benchmark(fp32(Path(d) / "fp32"), data.val_texts, n_latency)
        out.update({f"fp32_{k}": plain[k] for k in FP32_BENCH_KEYS if k in plain})
    return {**out, "bench_s": time.time() - t0}
