"""The student search space.

Optuna samples it define-by-run (``sample_student``), so invalid combinations cannot be drawn:
the number of heads is chosen among the divisors listed for the sampled hidden size (head size
32-64), and what "teacher" initialisation copies depends on the shapes (below).

| dimension | values |
|---|---|
| layers | 1-4 |
| hidden | 96, 128, 192, 256, 384 |
| heads | divisors of hidden with head size 32-64 (96: 2/3, 128: 2/4, 192: 3/4/6, 256: 4/8, 384: 6/12) |
| FFN width | hidden x 1, 2 or 4 |
| vocabulary | 4k, 8k, 16k most frequent training pieces, or all pieces seen in training (0) |
| KD alpha | 0.3-1.0 (weight of the soft-label KL term; 1 - alpha on hard-label CE) |
| KD temperature | 1-4 |
| learning rate | 2e-4 to 3e-3, log scale |
| epochs | 2 to `--max-epochs` (default 4); ASHA stops weak trials at quarter-epoch rungs |
| init | "teacher": the teacher's embedding rows for the kept pieces, projected on their top
  principal directions when hidden < the teacher's, and the teacher's lower layers when hidden,
  heads and FFN width equal the teacher's; "random" |
"""
from __future__ import annotations

from dataclasses import dataclass

HEADS_FOR_HIDDEN = {96: (2, 3), 128: (2, 4), 192: (3, 4, 6), 256: (4, 8), 384: (6, 12)}
FFN_RATIOS = (1, 2, 4)
VOCABS = (4000, 8000, 16000, 0)


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
    init: str = "teacher"
    batch_size: int = 64
    evals_per_epoch: int = 4   # validation + int8 PTQ reports per epoch (ASHA's rungs)
    max_length: int = 128
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    dropout: float = 0.1
    seed: int = 13
    threads: int = 2

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"heads={self.heads} must divide hidden={self.hidden}")
        if self.init not in ("teacher", "random"):
            raise ValueError(f"init must be 'teacher' or 'random', got {self.init!r}")
        if not 0 <= self.kd_alpha <= 1:
            raise ValueError(f"kd_alpha must be in [0, 1], got {self.kd_alpha}")


def sample_student(trial, max_epochs: int = 8) -> dict:
    """Define-by-run space for ``OptunaSearch(space=...)``; returns the constant settings."""
    layers = trial.suggest_int("layers", 1, 4)
    hidden = trial.suggest_categorical("hidden", sorted(HEADS_FOR_HIDDEN))
    heads = trial.suggest_categorical(f"heads_for_{hidden}", HEADS_FOR_HIDDEN[hidden])
    ffn_ratio = trial.suggest_categorical("ffn_ratio", FFN_RATIOS)
    trial.suggest_categorical("vocab", VOCABS)
    trial.suggest_float("kd_alpha", 0.3, 1.0)
    trial.suggest_float("kd_temperature", 1.0, 4.0)
    trial.suggest_float("lr", 2e-4, 3e-3, log=True)
    trial.suggest_categorical("init", ("teacher", "random"))
    trial.suggest_int("epochs", min(2, max_epochs), max_epochs)
    return {"heads": heads, "ffn": hidden * ffn_ratio, "layers": layers}


def to_config(params: dict, **fixed) -> StudentConfig:
    """Trial parameters (Optuna's names) -> StudentConfig."""
    hidden = params["hidden"]
    return StudentConfig(layers=params["layers"], hidden=hidden, heads=params.get("heads") or params[f"heads_for_{hidden}"],
                         ffn=params.get("ffn") or hidden * params["ffn_ratio"], vocab=params["vocab"],
                         kd_alpha=params["kd_alpha"], kd_temperature=params["kd_temperature"], lr=params["lr"],
                         epochs=params["epochs"], init=params["init"], **fixed)
