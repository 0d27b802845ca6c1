"""What a search offers the user to choose from, decided in one place: the trivial-trial rule, the Pareto front
(``pareto.csv``, the printed front, the report's plots) and the choice rule the report and the export apply.

Every number here is the one the search optimises (``trainables.metrics.OBJECTIVES``): int8 validation weighted F1,
end-to-end latency (text in -> class scores out) and size. No torch, no Ray: pandas and numpy only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trainables.metrics import ACCURACY, FIDELITY, LATENCY, OBJECTIVES, SIZE

TRIVIAL = "trivial"  # trials.csv's column: True for a trial no better than the trivial predictor on validation
CHOICE_RULE = ("the most accurate Pareto-front member on int8 validation weighted F1 within the limits (ties: the "
               "faster end to end, then the smaller, then the lower trial id); trivial trials are never chosen")
FIDELITY_RULE = ("among the members within the validation noise of the most accurate (one standard error of its "
                 "int8 validation weighted F1, sqrt(f(1-f)/n) on the n validation posts), the one with the highest "
                 "fidelity (argmax agreement with the teacher on the held-out unlabelled slice); then as before")


def trivial_weighted_f1(labels) -> float:
    """Validation weighted F1 a model gets without reading the text: the better of the majority-class predictor
    (exact) and the label-prior predictor (a class drawn with the label frequencies; expected weighted F1
    = sum_k p_k^2, since each class's precision and recall are then both p_k)."""
    y = np.asarray(labels)
    if y.size == 0:
        raise ValueError("trivial_weighted_f1: no validation labels")
    _, counts = np.unique(y, return_counts=True)
    p = counts / counts.sum()
    m = p.max()
    majority = m * 2 * m / (1 + m)  # the majority class's F1 (precision m, recall 1), weighted by m; others score 0
    return float(max(majority, np.sum(p ** 2)))


def mark_trivial(df: pd.DataFrame, val_labels) -> tuple[pd.DataFrame, float]:
    """``df`` with the ``trivial`` column (int8 validation weighted F1 <= the trivial predictor's; a trial
    without an int8 figure is not marked) and that bar."""
    bar = trivial_weighted_f1(val_labels)
    acc = pd.to_numeric(df[ACCURACY], errors="coerce") if ACCURACY in df else pd.Series(np.nan, index=df.index)
    return df.assign(**{TRIVIAL: (acc <= bar + 1e-12).to_numpy()}), bar


def candidates(df: pd.DataFrame) -> pd.DataFrame:
    """Trials a user may be offered: not failed, not trivial, with all three objectives measured."""
    ok = df[df["status"] != "error"] if "status" in df else df
    if TRIVIAL in ok:
        ok = ok[~ok[TRIVIAL].fillna(False).astype(bool)]
    missing = [k for k in OBJECTIVES if k not in ok]
    if missing and len(ok):
        raise ValueError(f"the trials table has no {', '.join(missing)} column: it predates the search's objectives; "
                         f"run the search again, or pass --trial")
    return ok.dropna(subset=list(OBJECTIVES))


def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """The ``candidates`` not dominated on ``OBJECTIVES`` (int8 validation weighted F1 up, end-to-end latency
    down, size down), sorted by latency. A trial equal to another on every objective is kept with it; one equal
    on some objectives and worse on another is dominated."""
    ok = candidates(df)
    sign = np.array([-1.0 if m == "max" else 1.0 for m in OBJECTIVES.values()])
    pts = ok[list(OBJECTIVES)].to_numpy(dtype=float) * sign
    keep = [not any(np.all(q <= p) and np.any(q < p) for q in pts) for p in pts]
    return ok[keep].sort_values([LATENCY, "trial_id"] if "trial_id" in ok else LATENCY)


def validation_noise(best: float, n_val: int) -> float:
    """One standard error of a validation figure ``best`` on ``n_val`` posts (binomial): differences smaller than
    this are not told apart by validation."""
    if n_val <= 0:
        raise ValueError(f"validation_noise: n_val must be positive, got {n_val}")
    return float(np.sqrt(max(best * (1 - best), 0.0) / n_val))


def choose(pool: pd.DataFrame, max_latency_ms: float | None = None, max_size_mib: float | None = None,
           n_val: int | None = None) -> pd.DataFrame:
    """``pool``'s members within the limits (end-to-end latency, size), best first: by ``FIDELITY_RULE`` when
    ``n_val`` (validation posts) is given and the members have a fidelity figure, else by ``CHOICE_RULE``;
    empty when none fits."""
    pool = candidates(pool)
    if max_latency_ms is not None:
        pool = pool[pool[LATENCY] <= max_latency_ms]
    if max_size_mib is not None:
        pool = pool[pool[SIZE] <= max_size_mib]
    keys = [ACCURACY, LATENCY, SIZE] + (["trial_id"] if "trial_id" in pool else [])
    ranked = pool.sort_values(keys, ascending=[False, True, True] + [True] * (len(keys) - 3))
    if not fidelity_applies(ranked, n_val):
        return ranked
    acc = pd.to_numeric(ranked[ACCURACY])
    best = float(acc.iloc[0])
    close = (acc >= best - validation_noise(best, n_val) - 1e-12).to_numpy()
    fid = pd.to_numeric(ranked[FIDELITY], errors="coerce").fillna(-1.0)
    tied = ranked[close].assign(_fid=fid[close]).sort_values("_fid", ascending=False, kind="stable").drop(columns="_fid")
    return pd.concat([tied, ranked[~close]])


def fidelity_applies(pool: pd.DataFrame, n_val: int | None) -> bool:
    """Whether ``choose`` breaks validation ties by fidelity: a validation size is known and some member has a
    fidelity figure."""
    return (n_val is not None and len(pool) > 0 and FIDELITY in pool
            and pd.to_numeric(pool[FIDELITY], errors="coerce").notna().any())


def limits_text(max_latency_ms: float | None, max_size_mib: float | None) -> str:
    """The limits as a report states them: a value with its unit, or "no limit"."""
    lat = "no limit" if max_latency_ms is None else f"{max_latency_ms:g} ms end to end"
    size = "no limit" if max_size_mib is None else f"{max_size_mib:g} MiB"
    return f"latency {lat}, size {size}"
