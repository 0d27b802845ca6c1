"""``report.html``: the Pareto fronts as one self-contained interactive page (plotly). Hovering a
point shows its trial, configuration and figures; the teacher, TF-IDF and an earlier search's front
are marked. The axes are the plots' (``analysis/plots.py``): end-to-end latency for every system, and the front
drawn is ``pareto.csv``; trivial trials are drawn apart."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from inference.atomic import atomic_file
from trainables.metrics import FRONT_SHOWN, LATENCY

CONFIG = ["layers", "hidden", "heads", "ffn", "vocab_size", "init", "transfer", "lexical_buckets", "lr", "kd_alpha",
          "kd_temperature", "epochs", "epoch"]
AXES = ((LATENCY, "end-to-end latency p50, ms (text in -> scores out, batch 1, 1 thread)"),
        ("size_mib", "size on disk, MiB"))
TRACE_TRIALS = "trials"  # the trace holding one point per trial that ran (tests/test_report_browser.py counts them)


def _hover(df: pd.DataFrame) -> list[str]:
    cols = [c for c in ["trial_id", *CONFIG, *FRONT_SHOWN, "status"] if c in df]

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    return ["<br>".join(f"{c}: {fmt(r[c])}" for c in cols if pd.notna(r[c])) for _, r in df.iterrows()]


def log_ticks(values) -> list[float]:
    """Plain-number ticks for a log axis spanning ``values``: 1, 2, 3, 5 times each power of ten (0.3, 0.5, 1, 2,
    3, 5, 10, ...), where plotly's own minor labels read "3 4 5 ... 9" for 0.3-0.9."""
    import math

    v = [float(x) for x in values if x is not None and float(x) > 0 and math.isfinite(float(x))]
    if not v:
        return []
    lo, hi = math.floor(math.log10(min(v))), math.ceil(math.log10(max(v)))
    return [round(m * 10.0 ** e, 10) for e in range(lo, hi + 1) for m in (1, 2, 3, 5)
            if min(v) / 1.5 <= m * 10.0 ** e <= max(v) * 1.5]


def write_html(trials: pd.DataFrame, front: pd.DataFrame, refs: list[dict], out: Path,
               before: pd.DataFrame | None = None, labels: tuple[str, str] = ("before", "after"),
               title: str = "Student search") -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from analysis.plots import front_2d, split_trivial

    y = "int8_val_weighted_f1"
    ok, trivial = (d.dropna(subset=[y]) for d in split_trivial(trials))
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=[a[1] for a in AXES])
    for col, (x, xlabel) in enumerate(AXES, start=1):
        fig.add_trace(go.Scatter(x=ok[x], y=ok[y], mode="markers", name=TRACE_TRIALS, legendgroup="trials",
                                 showlegend=col == 1, marker=dict(color="lightgray", size=7),
                                 hovertext=_hover(ok), hoverinfo="text"), row=1, col=col)
        if len(trivial):
            fig.add_trace(go.Scatter(x=trivial[x], y=trivial[y], mode="markers", legendgroup="trivial",
                                     name="trivial: no better than the majority/prior (off the front)",
                                     showlegend=col == 1, marker=dict(color="grey", symbol="x", size=8),
                                     hovertext=_hover(trivial), hoverinfo="text"), row=1, col=col)
        f = front_2d(front.dropna(subset=[y]), x, y)
        fig.add_trace(go.Scatter(x=f[x], y=f[y], mode="lines+markers", name=f"front ({labels[1]})",
                                 legendgroup="front", showlegend=col == 1, line=dict(color="crimson"),
                                 hovertext=_hover(f), hoverinfo="text"), row=1, col=col)
        if before is not None and x in before:
            b, _ = split_trivial(before)
            bf = front_2d(b.dropna(subset=[y]), x, y)
            fig.add_trace(go.Scatter(x=bf[x], y=bf[y], mode="lines+markers", name=f"front ({labels[0]})",
                                     legendgroup="before", showlegend=col == 1, line=dict(color="steelblue", dash="dot"),
                                     hovertext=_hover(bf), hoverinfo="text"), row=1, col=col)
        for r in refs:
            rx = r.get(x)
            if rx is None or r.get("val_weighted_f1") is None:
                continue
            fig.add_trace(go.Scatter(x=[rx], y=[r["val_weighted_f1"]], mode="markers+text", text=[r["name"]],
                                     textposition="bottom left", cliponaxis=False, name=r["name"],
                                     legendgroup=r["name"], showlegend=col == 1, marker=dict(symbol="diamond", size=11),
                                     hovertext=[f"{r['name']}<br>val wF1 {r['val_weighted_f1']:.4f}<br>"
                                                f"test wF1 {r.get('test_weighted_f1', float('nan')):.4f}<br>"
                                                f"{x}: {rx:.4g}"], hoverinfo="text"), row=1, col=col)
        ticks = log_ticks([*ok[x], *trivial[x], *(r.get(x) for r in refs if r.get(x) is not None)])
        fig.update_xaxes(type="log", title_text=xlabel, tickvals=ticks, ticktext=[f"{v:g}" for v in ticks],
                         row=1, col=col)
    fig.update_yaxes(title_text="weighted F1 on validation (int8 students)", row=1, col=1)
    fig.update_layout(title=title, height=600, width=1300, template="plotly_white", hovermode="closest",
                      margin=dict(l=80, r=60, t=90, b=70))
    path = Path(out) / "report.html"
    with atomic_file(path) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True)
    return path.name
