"""Pareto plots: weighted F1 against median batch-1 latency end to end (text in -> class scores out, the figure the
search optimises and the export limits, for the students, the teacher and TF-IDF alike) and against size. The
front drawn is ``pareto.csv``, the front the search and the export use; trivial trials are drawn apart."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from inference.atomic import atomic_file
from search.pareto import TRIVIAL
from trainables.metrics import FIDELITY, LATENCY

LATENCY_LABEL = "median batch-1 latency end to end, ms (text in -> scores out, 1 thread)"

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


def readable_log_axis(axis) -> None:
    """Log-axis ticks as plain numbers (0.3, 0.5, 1, 2, 5, 20) instead of 10^x and unlabelled minor ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    axis.set_minor_locator(LogLocator(base=10, subs=(4.0, 6.0, 7.0, 8.0, 9.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def split_trivial(trials: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the trials that ran, not trivial; the trivial ones), failed trials left out."""
    ok = trials[trials.status != "error"]
    mask = ok[TRIVIAL].fillna(False).astype(bool) if TRIVIAL in ok else pd.Series(False, index=ok.index)
    return ok[~mask], ok[mask]


def _save(fig, ax, path: Path, legend_size: int) -> str:
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size, loc="lower right")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path.name


def _plot(trials, front, refs, x: str, xlabel: str, path: Path, log_x: bool, chosen: dict | None = None) -> str:
    fig, ax = _figure()
    ok, trivial = split_trivial(trials)
    ax.scatter(ok[x], ok["int8_val_weighted_f1"], s=14, c="lightsteelblue", label="every trial (int8, validation)")
    if len(trivial):
        ax.scatter(trivial[x], trivial["int8_val_weighted_f1"], s=30, marker="x", c="grey",
                   label=f"trivial: no better than the majority/prior ({len(trivial)}, off the front)")
    # members of the 3-objective front (F1, latency, size) as dots; the line is the front on these two axes
    ax.scatter(front[x], front["int8_val_weighted_f1"], s=22, c="tab:blue", label="3-objective front (int8, validation)")
    f2 = front_2d(front, x, "int8_val_weighted_f1")
    ax.plot(f2[x], f2["int8_val_weighted_f1"], "-", c="tab:blue", label="front on these axes (validation)")
    if "test_weighted_f1" in front:
        ax.scatter(front[x], front["test_weighted_f1"], s=22, facecolors="none", edgecolors="tab:green",
                   label="3-objective front (int8, test)")
    annotate_fidelity(ax, front, x)
    if chosen is not None and chosen.get(x) is not None:  # where the report's choice is, on the same axis
        ax.scatter([chosen[x]], [chosen["int8_val_weighted_f1"]], marker="*", s=160, c="gold", edgecolors="black",
                   zorder=5, label=f"chosen: {chosen.get('trial_id')} (int8, validation)")
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
        readable_log_axis(ax.xaxis)
    return _save(fig, ax, path, 7)


def annotate_fidelity(ax, front: pd.DataFrame, x: str) -> None:
    """Each front member's fidelity to the teacher (argmax agreement on the held-out unlabelled slice) written
    beside its validation dot, when the trials measured it."""
    if FIDELITY not in front:
        return
    for _, r in front.iterrows():
        if pd.notna(r.get(FIDELITY)) and pd.notna(r.get(x)):
            ax.annotate(f"{r[FIDELITY]:.2f}", (r[x], r["int8_val_weighted_f1"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=6, color="tab:blue")
    ax.plot([], [], " ", label="numbers: front members' agreement with the teacher (held-out slice)")


def _front_pair(ax, groups, x: str, xlabel: str) -> None:
    for df, label, colour in groups:
        if not len(df):
            continue
        ax.scatter(df[x], df.int8_val_weighted_f1, s=12, c=colour, alpha=0.35)
        f = front_2d(df, x, "int8_val_weighted_f1")
        ax.plot(f[x], f.int8_val_weighted_f1, "o-", c=colour, label=f"{label} ({len(df)} trials, val)")
        if "test_weighted_f1" in df:
            t = df.dropna(subset=["test_weighted_f1"])
            ax.scatter(t[x], t.test_weighted_f1, s=30, marker="^", facecolors="none", edgecolors=colour,
                       label=f"{label}: front members on test")
    ax.set_xscale("log")
    readable_log_axis(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)


def _before_after(trials: pd.DataFrame, path: Path, before: pd.DataFrame | None = None,
                  labels: tuple[str, str] = ("before", "after")) -> str | None:
    """Two fronts side by side (latency | size): ``before`` (an earlier search's trials) against this
    search's; without ``before``, plain logit-KD trials against all trials of this search."""
    ok, _ = split_trivial(trials)
    if before is not None:
        groups = [(before[before.status != "error"], labels[0], "tab:orange"), (ok, labels[1], "tab:blue")]
    elif "transfer" in trials and "feature_kd" in trials:
        plain = ok[(ok.transfer.fillna("none") == "none") & (ok.feature_kd.fillna(0) == 0)]
        groups = [(plain, "plain logit KD on the labelled posts", "tab:orange"),
                  (ok, "all trials (transfer sets, feature KD)", "tab:blue")]
    else:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    _front_pair(axes[0], groups, LATENCY, LATENCY_LABEL)
    _front_pair(axes[1], groups, "size_mib", "size on disk, MiB (int8 model + tokenizer)")
    axes[0].set_ylabel("weighted F1 (int8)")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path.name


def write_all(trials: pd.DataFrame, front: pd.DataFrame, out: Path, refs: list[dict],
              before: pd.DataFrame | None = None, labels: tuple[str, str] = ("before", "after"),
              chosen: dict | None = None) -> list[str]:
    names = [_plot(trials, front, refs, LATENCY, LATENCY_LABEL, out / "pareto_latency.png", True, chosen),
             _plot(trials, front, refs, "size_mib", "size on disk, MiB (model + tokenizer)", out / "pareto_size.png", True,
                   chosen),
             _before_after(_with_test(trials, front), out / "pareto_before_after.png", before, labels)]
    return [n for n in names if n]


def _with_test(trials: pd.DataFrame, front: pd.DataFrame) -> pd.DataFrame:
    """Trials with the test weighted F1 of the front members (only those were evaluated on test)."""
    if "test_weighted_f1" in trials or "test_weighted_f1" not in front:
        return trials
    return trials.merge(front[["trial_id", "test_weighted_f1"]], on="trial_id", how="left")
