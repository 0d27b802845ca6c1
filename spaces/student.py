"""The student search space.

Optuna samples it define-by-run (``sample_student``), so invalid combinations cannot be drawn:
the number of heads is chosen among the divisors listed for the sampled hidden size (head size
32-64), and what "teacher" initialisation copies depends on the shapes (below).

``DIMENSIONS`` (below) is the space: each row's name, type, default choices or range, and help. From it come
``StudentSpace``'s fields, ``search/run.py``'s options (``--NAME V ...`` for choices, ``--min-NAME``/``--max-NAME``
for ranges), the points ``--enqueue`` accepts, the order Optuna samples in, and (through ``StudentConfig``) the
columns of ``trials.csv``. What the dimensions mean where the table's help is short:

- heads: divisors of hidden with head size 32-64 (``HEADS_FOR_HIDDEN``); a "pruned" student keeps the teacher's
  head size (e5-small: 32, so 256 wide = 8 heads) and an FFN no wider than the teacher's.
- init "teacher": the teacher's embedding rows for the kept pieces, projected on their top principal directions
  when hidden < the teacher's, and the teacher's lower layers when hidden, heads and FFN width equal the teacher's.
- transfer: which teacher-labelled transfer sets (``corpus.augment``, ``corpus.transfer_text``) join the labelled
  posts; the choices are the sets built for the run (``--transfer``).
- feature_kd: a cosine loss between the student's pooled features (through a learned projection to the teacher's
  width, dropped at export) and the teacher's cached pooled features.
- token_kd: the teacher runs beside the student on the student's own pieces (mapped back to the teacher's ids, so
  the tokens align); each student layer's token states, through a learned projection, learn the teacher's (a
  "pruned" student's layer i learns teacher layer i, the layer it was cut from; others the uniform map) with a
  cosine loss over the non-padding tokens.
- hidden_kd: student layer i of L learns teacher layer round((i + 1) * T / L) of T, each through its own learned
  projection, with a cosine loss on the layers' outputs mean-pooled over the tokens (sequence level: a student
  with a trimmed vocabulary tokenises a post differently from the teacher); only on labelled posts, whose teacher
  layer outputs are cached once.
"""
from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass

HEADS_FOR_HIDDEN = {96: (2, 3), 128: (2, 4), 192: (3, 4, 6), 256: (4, 8), 384: (6, 12)}
FFN_RATIOS = (1, 2, 4)
VOCABS = (4000, 8000, 16000, 0)
INITS = ("pruned", "teacher", "random")


@dataclass
class StudentConfig:
    layers: int = 2
    hidden: int = 256
    heads: int = 4
    ffn: int = 1024
    vocab: int = 8000          # 0 = every piece seen in training
    kd_alpha: float = 0.7
    kd_temperature: float = 2.0
    lr: float = 1e-3
    epochs: int = 4
    init: str = "teacher"      # "pruned" (cut from the teacher), "teacher" (embeddings projected) or "random"
    transfer: str = "none"     # "none" or teacher-labelled transfer sets joined by "+", e.g. "real+tang"
    transfer_ratio: float = 1.0  # transfer posts drawn per epoch, as a multiple of the labelled posts
    lexical_buckets: int = 0   # hashed n-gram buckets of the lexical branch (0 = no branch)
    lexical_lr: float = 5e-3   # learning rate of the lexical branch's table
    expert_buckets: int = 0    # the gold-label lexical expert fused with the student (its hashed buckets; 0 = none):
                               # fitted once per search on the labelled posts, weight chosen on validation per trial
    fused_weight: float = 0.0  # > 0: the student trains inside the fusion, its log-probabilities mixed with the
                               # expert's at this weight before the KD loss (it learns what the expert misses);
                               # 0: it trains alone and is fused only after training. Either way the exported
                               # folder's weight is chosen on validation afterwards (it lands near this one when
                               # the student learned to complement the expert)
    expert_gate: bool = True   # the expert's weight falls on text rarer than the labelled posts (inference.expert:
                               # the slope fitted on teacher-labelled transfer text); False: one weight for every text
    feature_kd: float = 0.0    # weight of the pooled-feature (cosine) distillation term
    hidden_kd: float = 0.0     # weight of the mapped-layer hidden-state (cosine) distillation term
    token_kd: float = 0.0      # weight of token-level hidden-state distillation (teacher run alongside)
    batch_size: int = 64
    evals_per_epoch: int = 4   # validation reports per epoch (ASHA's time unit: a round)
    ptq_rungs: int = 0         # int8 export + validation every round (0), or only at ASHA's rungs for this
                               # reduction factor (rounds g, g*k, g*k^2, ...; g = ptq_grace) and the last round; other rounds
                               # carry the last int8 figures forward (int8_round says from which round)
    ptq_grace: int = 1         # ASHA's grace period in rounds: its rungs are ptq_grace * ptq_rungs^i
    max_length: int = 128
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    dropout: float = 0.0       # hidden-state dropout; 0 (and attention_dropout 0) trains the shipped 4x256 student
    attention_dropout: float = 0.0  # 35 % faster on CPU with no loss: val wF1 int8 .6909 vs .6861 with 0.1
                               # (one seed, docs/results.md); dropout's per-element masks dominate small models' steps
    seed: int = 13
    threads: int = 2
    max_size_mib: float | None = None  # the vocabulary shrinks (to 2,000 pieces at least) until the estimate fits
    bench_texts: int = 300     # texts timed one at a time in each trial's CPU benchmark (fewer: quicker, noisier)
    bf16: str = "auto"         # autocast in training: "auto" (CUDA, or a CPU with native bf16), "bf16", "off"
    device: str = "cpu"        # where it trains: "cpu", "cuda" or "auto" (CUDA when visible); PTQ and latency: CPU

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"heads={self.heads} must divide hidden={self.hidden}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {self.device!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.ptq_rungs < 0 or self.ptq_rungs == 1:
            raise ValueError(f"ptq_rungs must be 0 (every round) or an ASHA reduction factor >= 2, got {self.ptq_rungs}")
        if self.bench_texts < 1:
            raise ValueError(f"bench_texts must be >= 1 (texts timed in a trial's benchmark), got {self.bench_texts}")
        if self.ptq_grace < 1:
            raise ValueError(f"ptq_grace must be >= 1 (ASHA's grace period in rounds), got {self.ptq_grace}")
        if self.transfer_ratio < 0:
            raise ValueError(f"transfer_ratio must be >= 0, got {self.transfer_ratio}")
        if self.expert_buckets < 0 or self.expert_buckets == 1:
            raise ValueError(f"expert_buckets must be 0 (no expert) or >= 2, got {self.expert_buckets}")
        if not 0 <= self.fused_weight < 1:
            raise ValueError(f"fused_weight must be in [0, 1), got {self.fused_weight}")
        if self.fused_weight and not self.expert_buckets:
            raise ValueError(f"fused_weight={self.fused_weight} trains the student fused with the gold expert: it needs "
                             f"expert_buckets > 0")
        if self.lexical_buckets < 0 or self.lexical_buckets == 1:
            raise ValueError(f"lexical_buckets must be 0 (off) or >= 2, got {self.lexical_buckets}")
        if not 0 <= self.kd_alpha <= 1:
            raise ValueError(f"kd_alpha must be in [0, 1], got {self.kd_alpha}")
        if min(self.feature_kd, self.hidden_kd, self.token_kd) < 0:
            raise ValueError(f"feature_kd, hidden_kd and token_kd must be >= 0, got {self.feature_kd}, "
                             f"{self.hidden_kd} and {self.token_kd}")


@dataclass(frozen=True)
class Dimension:
    """One search dimension: an Optuna parameter, the ``StudentConfig`` field it sets (``ffn_ratio`` sets
    ``ffn``), its ``search/run.py`` option and the ``trials.csv`` column it fills."""
    name: str
    kind: type                 # int, float or str: how the option's values are read
    default: tuple             # the choices, or (low, high) for a range: the recipe `search/run.py` searches
    help: str
    range: bool = False        # sampled between two bounds (options --min-NAME, --max-NAME), else among choices
    log: bool = False          # a range sampled on a log scale
    option: bool = True        # False: not an option of its own (``transfer``: the sets --transfer builds)
    aliases: tuple[str, ...] = ()  # older spellings of its option
    allowed: tuple = ()        # the values the option accepts at all (empty: checked by StudentSpace)
    only_with: str = ""        # sampled only when this (earlier) dimension drew a non-zero value; else 0

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


# The search space, in the order Optuna samples it (define-by-run, ``sample_student``). Adding a dimension is a row
# here (and a StudentConfig field that uses it): the CLI options, the space's checks, the points --enqueue accepts
# and the trials table's columns follow from this table.
DIMENSIONS = (
    Dimension("layers", int, (1, 4), "encoder layers", range=True),
    Dimension("hidden", int, (128, 192, 256), f"hidden sizes, from {sorted(HEADS_FOR_HIDDEN)}; the head count "
              f"follows (a 'pruned' student keeps the teacher's head size, others sample one with head size 32-64)"),
    Dimension("init", str, ("pruned",), f"initialisations, from {', '.join(INITS)}: cut from the teacher (pruned), "
              "the teacher's embeddings projected (teacher), or random", aliases=("--inits",), allowed=INITS),
    Dimension("ffn_ratio", int, FFN_RATIOS, "FFN width as a multiple of the hidden size"),
    Dimension("vocab", int, VOCABS, "vocabulary: the N most frequent training pieces (0 = every piece seen); shrunk "
              "further to fit --max-size-mib"),
    Dimension("kd_alpha", float, (0.3, 1.0), "weight of the soft-label KL term (1 - alpha on hard-label CE)",
              range=True),
    Dimension("kd_temperature", float, (1.0, 4.0), "distillation temperature", range=True),
    Dimension("lr", float, (2e-4, 3e-3), "student learning rate", range=True, log=True),
    Dimension("epochs", int, (2, 3), "student epochs (plain KD overfits after 2-3); ASHA stops weak trials at its "
              "rungs", range=True),
    Dimension("transfer", str, ("none",), "teacher-labelled transfer sets joined to the labelled posts: none, one "
              "recipe, or all joined by '+' (the sets --transfer builds)", option=False),
    Dimension("feature_kd", float, (0.0,), "weights of pooled-feature distillation"),
    Dimension("hidden_kd", float, (0.0,), "weights of hidden-state distillation from mapped teacher layers"),
    Dimension("token_kd", float, (0.0,), "weights of token-level hidden-state distillation (the teacher runs beside "
              "the student)"),
    Dimension("lexical_buckets", int, (0, 65536), "hashed n-gram buckets of the KD-trained lexical branch "
              "(0 = no branch)"),
    Dimension("expert_buckets", int, (0, 131072), "hashed n-gram buckets of the gold-label lexical expert (0 = no "
              "expert): fitted once on the labelled posts' gold labels, fused with each student at a weight chosen "
              "on validation (modeling/expert.py)"),
    Dimension("fused_weight", float, (0.0,), "the gold expert's weight inside the training loss (0 = the student "
              "trains alone and is fused after training; > 0 = it trains fused and learns what the expert misses); "
              "sampled only for students with an expert", only_with="expert_buckets"),
    Dimension("max_length", int, (128,), "token cap of the student, in training and in the exported runtime (longer "
              "posts are cut): a shorter cap is faster on long posts and may cost accuracy"),
)
DIMENSION = {d.name: d for d in DIMENSIONS}
SPACE_PARAMS = tuple(DIMENSION)


class _Space:
    """What ``StudentSpace`` does; its fields (one per row of ``DIMENSIONS``) are made from the table below."""

    def __post_init__(self):
        for dim in DIMENSIONS:
            values = getattr(self, dim.name)
            if dim.range and not (len(values) == 2 and values[0] <= values[1]):
                raise ValueError(f"{dim.name}: need min ({values[0]}) <= max ({values[-1]})")
            if not values:
                raise ValueError(f"{dim.name} needs at least one choice")
        bad = [h for h in self.hidden if h not in HEADS_FOR_HIDDEN]
        if bad:
            raise ValueError(f"hidden sizes {bad} are not in the space; choose from {sorted(HEADS_FOR_HIDDEN)}")
        for name in ("layers", "epochs"):
            if getattr(self, name)[0] < 1:
                raise ValueError(f"{name}: need 1 <= min, got {getattr(self, name)[0]}")
        bad = [i for i in self.init if i not in INITS]
        if bad:
            raise ValueError(f"inits {bad} are not known; choose from {', '.join(INITS)}")
        bad = [n for n in self.max_length if not 8 <= n <= 512]
        if bad:
            raise ValueError(f"--max-length {bad}: token caps from 8 to 512 (the teachers' position limit)")
        for name, none in (("lexical_buckets", "no branch"), ("expert_buckets", "no expert")):
            bad = [b for b in getattr(self, name) if b < 0 or b == 1]
            if bad:
                raise ValueError(f"{DIMENSION[name].flag} {bad}: bucket counts use 0 ({none}) or >= 2")
        bad = [w for w in self.fused_weight if not 0 <= w < 1]
        if bad:
            raise ValueError(f"--fused-weight {bad}: weights from 0 (train alone) up to, not including, 1")
        if "pruned" in self.init and self.teacher_shape is not None:
            t_layers, t_hidden, t_heads, _ = self.teacher_shape
            t_head = t_hidden // t_heads
            bad = [h for h in self.hidden if h > t_hidden or h % t_head or h // t_head > t_heads]
            if bad:
                fit = [h for h in HEADS_FOR_HIDDEN if h <= t_hidden and not h % t_head]
                raise ValueError(f"--hidden {bad} cannot be cut from the teacher ({t_hidden} channels, {t_heads} heads "
                                 f"of {t_head}) with --init pruned: use hidden sizes from {fit} or drop 'pruned'")
            if self.layers[1] > t_layers:
                raise ValueError(f"--max-layers {self.layers[1]}: the teacher has {t_layers} layers to cut from")

    def check_point(self, point: dict) -> None:
        """A point to enqueue (``parse_point``) must lie inside this space."""
        for key, value in point.items():
            if not self._allows(key, value):
                if key.startswith("heads_for_"):
                    allowed = f"from {list(HEADS_FOR_HIDDEN.get(int(key[10:]), ()))}"
                elif DIMENSION[key].range:
                    allowed = "in [{}, {}]".format(*getattr(self, key))
                else:
                    allowed = f"from {list(getattr(self, key))}"
                raise ValueError(f"--enqueue {key}={value}: not in the space ({key} {allowed})")

    def restrict(self, point: dict) -> dict:
        """``point`` without the settings this space does not offer (a default point, not a user's)."""
        return {k: v for k, v in point.items() if self._allows(k, v)}

    def _allows(self, key: str, value) -> bool:
        if key.startswith("heads_for_"):
            return value in HEADS_FOR_HIDDEN.get(int(key[10:]), ())
        values = getattr(self, key)
        return values[0] <= value <= values[1] if DIMENSION[key].range else value in values

    def pruned_shape(self, hidden: int, ffn: int) -> tuple[int, int]:
        """(heads, ffn) of a student of width ``hidden`` cut from the teacher: the teacher's head size
        kept (heads = hidden / head size), the FFN no wider than the teacher's."""
        t_layers, t_hidden, t_heads, t_ffn = self.teacher_shape
        return hidden // (t_hidden // t_heads), min(ffn, t_ffn)


StudentSpace = make_dataclass(
    "StudentSpace",
    [(d.name, tuple, field(default=d.default)) for d in DIMENSIONS]
    # (layers, hidden, heads, ffn) of the teacher that "pruned" students are cut from; None: not known yet
    + [("teacher_shape", "tuple[int, int, int, int] | None", field(default=None))],
    bases=(_Space,), frozen=True)
StudentSpace.__module__ = __name__  # pickled by reference (Ray ships the space to its workers)
StudentSpace.__doc__ = ("The space a search samples: one field per row of ``DIMENSIONS`` (its choices, or (low, high) "
                        "for a range; defaults: the table's), and the teacher's shape.")


def sample_student(trial, space: StudentSpace = StudentSpace()) -> dict:
    """Define-by-run space for ``OptunaSearch(space=...)``: every dimension with a range or with more than one
    choice is an Optuna parameter, sampled in ``DIMENSIONS``' order (a conditional one, ``only_with``, only when the
    dimension it depends on drew a non-zero value); returns what is not a parameter (the one choice of the others,
    and the shape: ``heads``, ``ffn``)."""
    point = {}
    for dim in DIMENSIONS:
        values = getattr(space, dim.name)
        if dim.only_with and not point[dim.only_with]:  # a conditional dimension: not drawn, and 0
            point[dim.name] = dim.kind(0)
        elif dim.range:
            suggest = trial.suggest_int if dim.kind is int else trial.suggest_float
            point[dim.name] = suggest(dim.name, *values, log=dim.log)
        else:
            point[dim.name] = trial.suggest_categorical(dim.name, values) if len(values) > 1 else values[0]
        if dim.name == "ffn_ratio":  # the shape follows the width, drawn here (Optuna's order matters for a seed)
            point["heads"], point["ffn"] = _shape(trial, space, point)
    return {k: v for k, v in point.items() if k not in trial.params}


def _shape(trial, space: StudentSpace, point: dict) -> tuple[int, int]:
    hidden, ffn = point["hidden"], point["hidden"] * point["ffn_ratio"]
    if point["init"] == "pruned" and space.teacher_shape is not None:  # the teacher's head size: heads follow
        return space.pruned_shape(hidden, ffn)
    return trial.suggest_categorical(f"heads_for_{hidden}", HEADS_FOR_HIDDEN[hidden]), ffn


def parse_point(text: str) -> dict:
    """``NAME=VALUE,...`` over the space's parameters (``SPACE_PARAMS`` and ``heads_for_<hidden>``):
    a trial for Optuna to run first (``enqueue_trial``), e.g. a student known to be good."""
    point = {}
    for part in filter(None, text.split(",")):
        key, eq, value = part.partition("=")
        if not eq or not (key in SPACE_PARAMS or key.startswith("heads_for_")):
            raise ValueError(f"--enqueue {part!r}: expected NAME=VALUE with NAME one of {', '.join(SPACE_PARAMS)} "
                             f"or heads_for_<hidden>")
        kind = DIMENSION[key].kind if key in DIMENSION else int
        try:
            point[key] = kind(value)
        except ValueError:
            raise ValueError(f"--enqueue {part!r}: {key} takes {kind.__name__} values") from None
    return point


def estimated_size_mib(cfg: StudentConfig, vocab: int) -> float:
    """Shipped size of an int8 student (graph + tokenizer + lexical table + gold expert), estimated from
    its shape: 1 byte per weight, ~60 bytes of ``tokenizer.json`` per piece, 5 bytes per lexical bucket
    (int8 per class), 7 per expert bucket (int8 per class + float16 idf); calibrated on exported folders
    within ~5 %."""
    h, f = cfg.hidden, cfg.ffn
    weights = vocab * h + cfg.max_length * h + cfg.layers * (4 * h * h + 2 * h * f)
    return (weights + 60 * vocab + 5 * cfg.lexical_buckets + 7 * cfg.expert_buckets + 200_000) / 2**20


def fit_vocab(cfg: StudentConfig, seen_pieces: int) -> int:
    """The vocabulary the student gets: ``cfg.vocab`` (0 = every seen piece), shrunk in steps of
    1,000 until ``estimated_size_mib`` fits ``cfg.max_size_mib`` (never below 2,000 pieces)."""
    vocab = min(cfg.vocab or seen_pieces, seen_pieces)
    if cfg.max_size_mib is None:
        return vocab
    while vocab > 2000 and estimated_size_mib(cfg, vocab) > cfg.max_size_mib:
        vocab = max(2000, vocab - 1000)
    return vocab
