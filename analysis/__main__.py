"""``python -m analysis --experiment DIR [--out DIR]``: measure and write the report (see analysis.report)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("analysis")


def main(argv=None) -> int:
    from analysis.export import ExportError, Selection
    from search.cli import add_options, from_args, positive_int, run_cli

    p = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    p.add_argument("--experiment", type=Path, required=True, help="experiment directory written by search/run.py")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: EXPERIMENT/report)")
    p.add_argument("--data-dir", default=None, help="RuSentiment folder (else $RUSENTIMENT_DATA_DIR, else download)")
    add_options(p, Selection)
    p.add_argument("--before", type=Path, default=None,
                   help="an earlier experiment whose front is drawn beside this one (pareto_before_after.png)")
    p.add_argument("--labels", nargs=2, default=["before", "after"], metavar=("BEFORE", "AFTER"),
                   help="legend names of the two fronts")
    p.add_argument("--ood-test", default=None,
                   help="out-of-domain label,text test file (default: <data dir>/../rusentitweet/rusentitweet_test.csv)")
    p.add_argument("--bench-texts", type=positive_int, default=None,
                   help="validation texts timed one at a time for each measured model (default: the search's "
                        "--bench-texts, as the chosen trial recorded it, so that every latency compares like with like)")
    a = p.parse_args(argv)
    s = from_args(Selection, a)
    from corpus import DataError

    return run_cli(lambda: report(a, s), (ExportError, FileNotFoundError, DataError), log)


def report(a, s) -> int:
    from analysis.export import ExportError
    from analysis.report import build_report
    from search.experiment import Experiment

    for exp in [a.experiment] + ([a.before] if a.before else []):
        table = "trials" if exp != a.experiment else s.table
        if not Experiment(exp).data.is_file() or not Experiment(exp).table(table).is_file():
            raise ExportError(f"{exp} is not a finished experiment (needs data.json and {table}.csv from "
                              f"`python search/run.py` or `python -m studies.ablation`)")
    out = a.out or a.experiment / "report"
    build_report(a.experiment, out, a.data_dir, s.trial, s.max_latency_ms, s.max_size_mib,
                 a.before, tuple(a.labels), s.table, a.ood_test, a.bench_texts)
    print(f"wrote {out / 'report.md'}, {out / 'report.json'} and plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
