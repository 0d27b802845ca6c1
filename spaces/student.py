"""The student search space.

Optuna samples it define-by-run (``sample_student``), so invalid combinations cannot be drawn:
the number of heads is chosen among the divisors listed for the sampled hidden size (head size
32-64), and what "teacher" initialisation copies depends on the shapes (below).

| dimension | values |
|---|---|
| layers | 1-4 |
| hidden | 96, 128, 192, 256, 384 |
| heads | divisors of hidden with head size 32-64 (96: 2/3, 128: 2/4, 192: 3/4/6, 256: 4/8, 384: 6/12); a
  "pruned" student keeps the teacher's head size (e5-small: 32, so 256 wide = 8 heads) |
| FFN width | hidden x 1, 2 or 4 |
| vocabulary | 4k, 8k, 16k most frequent training pieces, or all pieces seen in training (0) |
| KD alpha | 0.3-1.0 (weight of the soft-label KL term; 1 - alpha on hard-label CE) |
| KD temperature | 1-4 |
| learning rate | 2e-4 to 3e-3, log scale |
| epochs | 2 to `--max-epochs` (default 4); ASHA stops weak trials at quarter-epoch rungs |
| init | "teacher": the teacher's embedding rows for the kept pieces, projected on their top
  principal directions when hidden < the teacher's, and the teacher's lower layers when hidden,
  heads and FFN width equal the teacher's; "random" |
| transfer | which teacher-labelled transfer sets (``corpus.augment``) join the labelled posts: "none",
  one recipe, or several joined by "+" (choices: the sets built for the run, ``--transfer``) |
| feature_kd | weight of the cosine loss between the student's pooled features (through a learned
  projection to the teacher's width, dropped at export) and the teacher's cached pooled features |
| token_kd | weight of token-level hidden-state distillation: the teacher runs beside the student on the
  student's own pieces (mapped back to the teacher's ids, so the tokens align), each student layer's
  token states, through a learned projection, learn the teacher's (a "pruned" student's layer i learns
  teacher layer i, the layer it was cut from; others the uniform map) with a cosine loss over the
  non-padding tokens |
| hidden_kd | weight of hidden-state distillation from mapped layers: student layer i of L learns
  teacher layer round((i + 1) * T / L) of T (12 for e5-small; uniform mapping, the top layer to the top layer), each through its
  own learned projection, with a cosine loss on the layers' outputs mean-pooled over the tokens
  (sequence level, because a student with a trimmed vocabulary tokenises a post differently from
  the teacher); only on labelled posts, whose teacher layer outputs are cached once |

``StudentSpace`` bounds layers, hidden sizes, epochs and the transfer / feature choices.
"""
from __future__ import annotations

from dataclasses import dataclass

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
        if self.ptq_grace < 1:
            raise ValueError(f"ptq_grace must be >= 1 (ASHA's grace period in rounds), got {self.ptq_grace}")
        if self.transfer_ratio < 0:
            raise ValueError(f"transfer_ratio must be >= 0, got {self.transfer_ratio}")
        if self.expert_buckets < 0 or self.expert_buckets == 1:
            raise ValueError(f"expert_buckets must be 0 (no expert) or >= 2, got {self.expert_buckets}")
        if self.lexical_buckets < 0 or self.lexical_buckets == 1:
            raise ValueError(f"lexical_buckets must be 0 (off) or >= 2, got {self.lexical_buckets}")
        if not 0 <= self.kd_alpha <= 1:
            raise ValueError(f"kd_alpha must be in [0, 1], got {self.kd_alpha}")
        if min(self.feature_kd, self.hidden_kd, self.token_kd) < 0:
            raise ValueError(f"feature_kd, hidden_kd and token_kd must be >= 0, got {self.feature_kd}, "
                             f"{self.hidden_kd} and {self.token_kd}")


@dataclass(frozen=True)
class StudentSpace:
    """Bounds of the space (``search/run.py`` flags); the defaults are the whole space above."""
    min_layers: int = 1
    max_layers: int = 4
    hiddens: tuple[int, ...] = tuple(sorted(HEADS_FOR_HIDDEN))
    max_epochs: int = 4
    transfers: tuple[str, ...] = ("none",)     # transfer-set choices built by the transfer stage
    feature_kd: tuple[float, ...] = (0.0,)     # weights of pooled-feature distillation to choose from
    hidden_kd: tuple[float, ...] = (0.0,)      # weights of mapped-layer hidden-state distillation
    token_kd: tuple[float, ...] = (0.0,)       # weights of token-level hidden-state distillation
    inits: tuple[str, ...] = INITS             # initialisations to choose from
    lexical_buckets: tuple[int, ...] = (0,)    # lexical-branch sizes to choose from (0 = no branch)
    expert_buckets: tuple[int, ...] = (0,)     # gold-expert sizes to choose from (0 = no expert)
    min_epochs: int = 2
    # (layers, hidden, heads, ffn) of the teacher that "pruned" students are cut from; None: not known yet
    teacher_shape: tuple[int, int, int, int] | None = None

    def __post_init__(self):
        bad = [h for h in self.hiddens if h not in HEADS_FOR_HIDDEN]
        if bad:
            raise ValueError(f"hidden sizes {bad} are not in the space; choose from {sorted(HEADS_FOR_HIDDEN)}")
        if not 1 <= self.min_layers <= self.max_layers:
            raise ValueError(f"layers: need 1 <= min ({self.min_layers}) <= max ({self.max_layers})")
        if not all((self.transfers, self.feature_kd, self.hidden_kd, self.token_kd, self.inits, self.lexical_buckets)):
            raise ValueError("transfers, feature_kd, hidden_kd, token_kd, inits and lexical_buckets need at least one "
                             "choice each")
        bad = [i for i in self.inits if i not in INITS]
        if bad:
            raise ValueError(f"inits {bad} are not known; choose from {', '.join(INITS)}")
        for flag, counts, none in (("--lexical-buckets", self.lexical_buckets, "no branch"),
                                   ("--expert-buckets", self.expert_buckets, "no expert")):
            bad = [b for b in counts if b < 0 or b == 1]
            if bad:
                raise ValueError(f"{flag} {bad}: bucket counts use 0 ({none}) or >= 2")
        if not self.expert_buckets:
            raise ValueError("expert_buckets needs at least one choice (0 = no expert)")
        if not 1 <= self.min_epochs <= self.max_epochs:
            raise ValueError(f"epochs: need 1 <= min ({self.min_epochs}) <= max ({self.max_epochs})")
        if "pruned" in self.inits and self.teacher_shape is not None:
            t_layers, t_hidden, t_heads, _ = self.teacher_shape
            t_head = t_hidden // t_heads
            bad = [h for h in self.hiddens if h > t_hidden or h % t_head or h // t_head > t_heads]
            if bad:
                fit = [h for h in HEADS_FOR_HIDDEN if h <= t_hidden and not h % t_head]
                raise ValueError(f"--hidden {bad} cannot be cut from the teacher ({t_hidden} channels, {t_heads} heads "
                                 f"of {t_head}) with --inits pruned: use hidden sizes from {fit} or drop 'pruned'")
            if self.max_layers > t_layers:
                raise ValueError(f"--max-layers {self.max_layers}: the teacher has {t_layers} layers to cut from")

    def check_point(self, point: dict) -> None:
        """A point to enqueue (``parse_point``) must lie inside this space."""
        for key, value in point.items():
            if not self._allows(key, value):
                allowed = self._allowed().get(key, HEADS_FOR_HIDDEN.get(int(key[10:]), ()) if key.startswith("heads_for_")
                                              else ())
                raise ValueError(f"--enqueue {key}={value}: not in the space ({key} from {list(allowed)})")

    def restrict(self, point: dict) -> dict:
        """``point`` without the settings this space does not offer (a default point, not a user's)."""
        return {k: v for k, v in point.items() if self._allows(k, v)}

    def _allows(self, key: str, value) -> bool:
        if key.startswith("heads_for_"):
            return value in HEADS_FOR_HIDDEN.get(int(key[10:]), ())
        allowed = self._allowed()
        return key not in allowed or value in allowed[key]

    def _allowed(self) -> dict:
        return {"layers": range(self.min_layers, self.max_layers + 1), "hidden": self.hiddens, "init": self.inits,
                "ffn_ratio": FFN_RATIOS, "vocab": VOCABS, "epochs": range(self.min_epochs, self.max_epochs + 1),
                "transfer": self.transfers, "feature_kd": self.feature_kd, "hidden_kd": self.hidden_kd,
                "token_kd": self.token_kd, "lexical_buckets": self.lexical_buckets,
                "expert_buckets": self.expert_buckets}

    def pruned_shape(self, hidden: int, ffn: int) -> tuple[int, int]:
        """(heads, ffn) of a student of width ``hidden`` cut from the teacher: the teacher's head size
        kept (heads = hidden / head size), the FFN no wider than the teacher's."""
        t_layers, t_hidden, t_heads, t_ffn = self.teacher_shape
        return hidden // (t_hidden // t_heads), min(ffn, t_ffn)


def sample_student(trial, space: StudentSpace = StudentSpace()) -> dict:
    """Define-by-run space for ``OptunaSearch(space=...)``; returns the constant settings."""
    layers = trial.suggest_int("layers", space.min_layers, space.max_layers)
    hidden = trial.suggest_categorical("hidden", space.hiddens)
    init = trial.suggest_categorical("init", space.inits) if len(space.inits) > 1 else space.inits[0]
    ffn = hidden * trial.suggest_categorical("ffn_ratio", FFN_RATIOS)
    if init == "pruned" and space.teacher_shape is not None:  # the teacher's head size: heads follow the width
        heads, ffn = space.pruned_shape(hidden, ffn)
    else:
        heads = trial.suggest_categorical(f"heads_for_{hidden}", HEADS_FOR_HIDDEN[hidden])
    trial.suggest_categorical("vocab", VOCABS)
    trial.suggest_float("kd_alpha", 0.3, 1.0)
    trial.suggest_float("kd_temperature", 1.0, 4.0)
    trial.suggest_float("lr", 2e-4, 3e-3, log=True)
    trial.suggest_int("epochs", space.min_epochs, space.max_epochs)
    if len(space.transfers) > 1:
        trial.suggest_categorical("transfer", space.transfers)
    if len(space.feature_kd) > 1:
        trial.suggest_categorical("feature_kd", space.feature_kd)
    if len(space.hidden_kd) > 1:
        trial.suggest_categorical("hidden_kd", space.hidden_kd)
    if len(space.token_kd) > 1:
        trial.suggest_categorical("token_kd", space.token_kd)
    constants = {"heads": heads, "ffn": ffn, "layers": layers}
    if len(space.inits) == 1:
        constants["init"] = init
    if len(space.lexical_buckets) > 1:
        trial.suggest_categorical("lexical_buckets", space.lexical_buckets)
    else:
        constants["lexical_buckets"] = space.lexical_buckets[0]
    if len(space.expert_buckets) > 1:
        trial.suggest_categorical("expert_buckets", space.expert_buckets)
    else:
        constants["expert_buckets"] = space.expert_buckets[0]
    if len(space.transfers) == 1:
        constants["transfer"] = space.transfers[0]
    if len(space.feature_kd) == 1:
        constants["feature_kd"] = space.feature_kd[0]
    if len(space.hidden_kd) == 1:
        constants["hidden_kd"] = space.hidden_kd[0]
    if len(space.token_kd) == 1:
        constants["token_kd"] = space.token_kd[0]
    return constants


SPACE_PARAMS = ("layers", "hidden", "init", "ffn_ratio", "vocab", "kd_alpha", "kd_temperature", "lr", "epochs",
                "transfer", "feature_kd", "hidden_kd", "token_kd", "lexical_buckets", "expert_buckets")


def parse_point(text: str) -> dict:
    """``NAME=VALUE,...`` over the space's parameters (``SPACE_PARAMS`` and ``heads_for_<hidden>``):
    a trial for Optuna to run first (``enqueue_trial``), e.g. a student known to be good."""
    point = {}
    for part in filter(None, text.split(",")):
        key, eq, value = part.partition("=")
        if not eq or not (key in SPACE_PARAMS or key.startswith("heads_for_")):
            raise ValueError(f"--enqueue {part!r}: expected NAME=VALUE with NAME one of {', '.join(SPACE_PARAMS)} "
                             f"or heads_for_<hidden>")
        for kind in (int, float, str):
            try:
                point[key] = kind(value)
                break
            except ValueError:
                continue
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
