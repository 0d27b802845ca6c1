"""``report.html``: the Pareto fronts as one self-contained interactive page (plotly). Hovering a
point shows its trial, configuration and figures; the teacher, TF-IDF and an earlier search's front
are marked."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from inference.atomic import atomic_file
from trainables.metrics import FRONT_SHOWN

CONFIG = ["layers", "hidden", "heads", "ffn", "vocab_size", "init", "transfer", "lexical_buckets", "lr", "kd_alpha",
          "kd_temperature", "epochs", "epoch"]
AXES = (("e2e_ms_p50", "end-to-end latency p50, ms (batch 1, 1 thread)"), ("size_mib", "size on disk, MiB"))


def _hover(df: pd.DataFrame) -> list[str]:
    cols = [c for c in ["trial_id", *CONFIG, *FRONT_SHOWN, "status"] if c in df]

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    return ["<br>".join(f"{c}: {fmt(r[c])}" for c in cols if pd.notna(r[c])) for _, r in df.iterrows()]


def write_html(trials: pd.DataFrame, front: pd.DataFrame, refs: list[dict], out: Path,
               before: pd.DataFrame | None = None, labels: tuple[str, str] = ("before", "after"),
               title: str = "Student search") -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from analysis.plots import front_2d

    y = "int8_val_weighted_f1"
    ok = trials[trials.status != "error"].dropna(subset=[y])
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=[a[1] for a in AXES])
    for col, (x, xlabel) in enumerate(AXES, start=1):
        x_of = (lambda d: d[x] if x in d else d.get("latency_ms_p50"))
        fig.add_trace(go.Scatter(x=x_of(ok), y=ok[y], mode="markers", name="trials", legendgroup="trials",
                                 showlegend=col == 1, marker=dict(color="lightgray", size=7),
                                 hovertext=_hover(ok), hoverinfo="text"), row=1, col=col)
        f = front_2d(ok.assign(_x=x_of(ok)), "_x", y)
        fig.add_trace(go.Scatter(x=f["_x"], y=f[y], mode="lines+markers", name=f"front ({labels[1]})",
                                 legendgroup="front", showlegend=col == 1, line=dict(color="crimson"),
                                 hovertext=_hover(f), hoverinfo="text"), row=1, col=col)
        if before is not None:
            b = before[before.status != "error"].dropna(subset=[y])
            bf = front_2d(b.assign(_x=x_of(b)), "_x", y)
            fig.add_trace(go.Scatter(x=bf["_x"], y=bf[y], mode="lines+markers", name=f"front ({labels[0]})",
                                     legendgroup="before", showlegend=col == 1, line=dict(color="steelblue", dash="dot"),
                                     hovertext=_hover(bf), hoverinfo="text"), row=1, col=col)
        for r in refs:
            rx = r.get(x, r.get("latency_ms_p50"))
            if rx is None or r.get("val_weighted_f1") is None:
                continue
            fig.add_trace(go.Scatter(x=[rx], y=[r["val_weighted_f1"]], mode="markers+text", text=[r["name"]],
                                     textposition="top center", name=r["name"], legendgroup=r["name"],
                                     showlegend=col == 1, marker=dict(symbol="diamond", size=11),
                                     hovertext=[f"{r['name']}<br>val wF1 {r['val_weighted_f1']:.4f}<br>"
                                                f"test wF1 {r.get('test_weighted_f1', float('nan')):.4f}<br>"
                                                f"{x}: {rx:.4g}"], hoverinfo="text"), row=1, col=col)
        fig.update_xaxes(type="log", title_text=xlabel, row=1, col=col)
    fig.update_yaxes(title_text="weighted F1 on validation (int8 students)", row=1, col=1)
    fig.update_layout(title=title, height=600, width=1300, template="plotly_white", hovermode="closest")
    path = Path(out) / "report.html"
    with atomic_file(path) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True)
    return path.name
