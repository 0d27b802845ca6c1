"""Where a student search's time went, from its trials' Ray Tune progress files: wall span, trial-seconds in
build / training / int8 export + validation / benchmark / the rest, rounds run (ASHA decides how many), training
throughput, and the slot time left idle (gaps between trials, the tail). Several experiments side by side
compare two searches; the same architecture's first round in both compares training speed directly.

    python -m studies.search_time /work/exp/rs12 /work/exp/rs15
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.experiment import Experiment  # noqa: E402


def trial_rows(experiment: Path) -> pd.DataFrame:
    """One row per trial: its phases' seconds, rounds, trained posts and first-round training seconds."""
    rows = []
    for progress in sorted(Experiment(experiment).trials.glob("*/progress.csv")):
        d = pd.read_csv(progress)
        if d.empty:
            continue
        last = d.iloc[-1]
        per_round = last["epoch_posts"] / (last["round"] / last["epoch"])  # posts in one round
        end = float(last["timestamp"])
        rows.append({"trial": str(last["trial_id"]), "start": end - float(last["time_total_s"]), "end": end,
                     "rounds": int(last["round"]), "build_s": float(last["build_s"]),
                     "train_s": float(d["round_train_s"].sum()), "ptq_s": float(d["ptq_eval_s"].sum()),
                     "bench_s": float(last["bench_s"]), "total_s": float(last["time_total_s"]),
                     "posts": per_round * int(last["round"]), "round1_train_s": float(d["round_train_s"].iloc[0]),
                     "params": int(last["params"]), "epoch_posts": int(last["epoch_posts"])})
    if not rows:
        raise FileNotFoundError(f"{experiment}/student_trials: no trial progress files; run search/run.py first")
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame, slots: int) -> dict:
    span = df.end.max() - df.start.min()
    busy = df.total_s.sum()
    return {"trials": len(df), "wall_span_s": round(span), "trial_s": round(busy),
            **{k: round(df[k].sum()) for k in ("build_s", "train_s", "ptq_s", "bench_s")},
            "other_s": round(busy - df[["build_s", "train_s", "ptq_s", "bench_s"]].sum().sum()),
            "idle_slot_s": round(slots * span - busy), "rounds": int(df.rounds.sum()),
            "trained_posts_per_train_s": round(df.posts.sum() / df.train_s.sum(), 1),
            "stopped_at_round_1": int((df.rounds == 1).sum())}


def markdown(df: pd.DataFrame) -> str:
    head = "| " + " | ".join([str(df.index.name or "")] + [str(c) for c in df.columns]) + " |"
    rows = ["| " + " | ".join([str(i)] + [str(v) for v in row]) + " |" for i, row in zip(df.index, df.values)]
    return "\n".join([head, "|" + "---|" * (len(df.columns) + 1), *rows])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("experiments", type=Path, nargs="+")
    p.add_argument("--slots", type=int, default=2, help="trials run at once (cores / --cpus-per-trial)")
    args = p.parse_args(argv)
    tables = {e.name: trial_rows(e) for e in args.experiments}
    print(markdown(pd.DataFrame({name: summary(df, args.slots) for name, df in tables.items()})))
    if len(tables) > 1:  # the same architecture's first round (the same posts per round) in each search
        # an architecture and pool: the student's parameter count and its epoch's posts
        first = [df.groupby(["params", "epoch_posts"]).round1_train_s.min().rename(name) for name, df in tables.items()]
        both = pd.concat(first, axis=1, join="inner")
        if len(both):
            print("\nfirst-round training seconds of architectures trained in every search:\n")
            print(markdown(both.round(1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
