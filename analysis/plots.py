"""Pareto plots: weighted F1 against median batch-1 latency and against size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MARKERS = {"teacher (fp32, torch)": ("s", "black"), "teacher + int8 PTQ (ONNX Runtime)": ("s", "grey"),
           "TF-IDF + LinearSVC": ("D", "tab:red")}


def front_2d(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Points not dominated on (x down, y up), sorted by x."""
    d = df.dropna(subset=[x, y]).sort_values([x, y], ascending=[True, False])
    best, keep = -np.inf, []
    for i, r in d.iterrows():
        if r[y] > best:
            keep.append(i)
            best = r[y]
    return d.loc[keep]


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7.5, 5))


def _save(fig, ax, path: Path, legend_size: int) -> str:
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def _plot(trials, front, refs, x: str, xlabel: str, path: Path, log_x: bool) -> str:
    fig, ax = _figure()
    ok = trials[trials.status != "error"]
    ax.scatter(ok[x], ok["int8_val_weighted_f1"], s=14, c="lightsteelblue", label="every trial (int8, validation)")
    # members of the 3-objective front (F1, latency, size) as dots; the line is the front on these two axes
    ax.scatter(front[x], front["int8_val_weighted_f1"], s=22, c="tab:blue", label="3-objective front (int8, validation)")
    f2 = front_2d(front, x, "int8_val_weighted_f1")
    ax.plot(f2[x], f2["int8_val_weighted_f1"], "-", c="tab:blue", label="front on these axes (validation)")
    if "test_weighted_f1" in front:
        ax.scatter(front[x], front["test_weighted_f1"], s=22, facecolors="none", edgecolors="tab:green",
                   label="3-objective front (int8, test)")
    for r in refs:
        if r.get(x) is None:
            continue
        yv = r.get("test_weighted_f1", r.get("test_accuracy"))
        marker, colour = MARKERS.get(r["name"], ("x", "tab:purple"))
        ax.scatter([r[x]], [yv], marker=marker, c=colour, s=45, label=f"{r['name']} (test)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("weighted F1")
    if log_x:
        ax.set_xscale("log")
    return _save(fig, ax, path, 7)


def _before_after(trials: pd.DataFrame, path: Path) -> str | None:
    """Front of plain logit-KD trials (no transfer set, no feature KD) vs the front of all trials."""
    if "transfer" not in trials or "feature_kd" not in trials:
        return None
    ok = trials[trials.status != "error"]
    plain = ok[(ok.transfer.fillna("none") == "none") & (ok.feature_kd.fillna(0) == 0)]
    fig, ax = _figure()
    for df, label, colour in ((plain, "plain logit KD on the labelled posts", "tab:orange"),
                              (ok, "all trials (transfer sets, feature KD)", "tab:blue")):
        if len(df):
            ax.scatter(df.latency_ms_p50, df.int8_val_weighted_f1, s=14, c=colour, alpha=0.4)
            f = front_2d(df, "latency_ms_p50", "int8_val_weighted_f1")
            ax.plot(f.latency_ms_p50, f.int8_val_weighted_f1, "o-", c=colour, label=f"front: {label} ({len(df)} trials)")
    ax.set_xscale("log")
    ax.set_xlabel("median batch-1 latency, ms (1 thread, int8 ONNX Runtime)")
    ax.set_ylabel("weighted F1 (int8, validation)")
    return _save(fig, ax, path, 8)


def write_all(trials: pd.DataFrame, front: pd.DataFrame, out: Path, refs: list[dict]) -> list[str]:
    names = [_plot(trials, front, refs, "latency_ms_p50", "median batch-1 latency, ms (1 thread)",
                   out / "pareto_latency.png", True),
             _plot(trials, front, refs, "size_mib", "size on disk, MiB (model + tokenizer)", out / "pareto_size.png", True),
             _before_after(trials, out / "pareto_before_after.png")]
    return [n for n in names if n]
