"""Each quantization choice for one student, measured in one run: ``python -m studies.quantization``.

The trial's fp32 torch student (``<experiment>/students_fp32/<trial>``) is exported once per form of
``modeling.onnx_export.QUANTIZATIONS`` (fp32, dynamic int8 per tensor and per channel, static int8
calibrated on training posts, 4-bit weights) by ``analysis.export.export_form``, the path
``python -m analysis.export --quantization FORM`` takes, and each folder is measured there: on-disk
size, batch-1 latency p50/p95 (1 thread, ``inference.benchmark``), validation and test weighted F1
(test with a bootstrap interval). Writes ``<experiment>/<tag>.csv`` and ``.json`` with the machine's
``lscpu`` model and flags::

    python -m studies.quantization --experiment experiments/rusentiment --trial 0de0d466
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("studies.quantization")
SHOWN = ["form", "size_mib", "model_onnx_mib", "latency_ms_p50", "latency_ms_p95", "e2e_ms_p50", "export_val_weighted_f1",
         "test_weighted_f1", "test_wf1_low", "test_wf1_high"]


def main(argv=None) -> int:
    from modeling.onnx_export import QUANTIZATIONS

    p = argparse.ArgumentParser(prog="python -m studies.quantization", description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", type=Path, required=True)
    p.add_argument("--trial", required=True, help="a trial id of <experiment>/<table>.csv (with an fp32 student)")
    p.add_argument("--table", default="trials", help="trials (the search) or a study's table, e.g. ablation")
    p.add_argument("--forms", nargs="+", default=list(QUANTIZATIONS), choices=list(QUANTIZATIONS))
    p.add_argument("--data-dir", default=None, help="where the experiment's data is, if not where it was")
    p.add_argument("--calibration-posts", type=int, default=200, help="training posts for int8-static ranges")
    p.add_argument("--tag", default="quantization", help="names the outputs: <tag>.csv, <tag>.json")
    p.add_argument("--keep", type=Path, default=None,
                   help="keep each form's model folder as KEEP/<form> (to time it beside others, e.g. studies.versus_tfidf)")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    from analysis.export import ExportError
    from corpus import DataError
    from search.cli import run_cli

    return run_cli(lambda: study(args), (ExportError, FileNotFoundError, DataError), log)


def study(args) -> int:
    """Export and measure each form; write <tag>.csv/.json into the experiment; print the table."""
    # ONNX Runtime's quantizers log every tensor through the root logger: keep the root at WARNING and
    # this project's loggers at INFO
    logging.getLogger().setLevel(logging.WARNING)
    for ours in ("studies", "analysis", "search", "modeling", "inference"):
        logging.getLogger(ours).setLevel(logging.INFO)
    import pandas as pd

    from analysis.export import choose_trial, export_form
    from inference.atomic import atomic_file, write_json
    from modeling.onnx_export import QUANTIZATIONS
    from search.experiment import Experiment
    from search.provenance import provenance

    experiment = args.experiment.resolve()
    t0, rows = time.time(), []
    row = choose_trial(experiment, args.trial, None, None, args.table)
    with tempfile.TemporaryDirectory() as d:
        for form in args.forms:
            t1 = time.time()
            folder, figures = export_form(experiment, row, form, (args.keep or Path(d)) / form, args.data_dir,
                                          args.calibration_posts)
            rows.append({"form": form, "what": QUANTIZATIONS[form], **figures,
                         "model_onnx_mib": (folder / "model.onnx").stat().st_size / 2**20,
                         "tokenizer_json_mib": (folder / "tokenizer.json").stat().st_size / 2**20,
                         "export_and_measure_s": round(time.time() - t1, 1)})
            log.info("%s: %s", form, {k: rows[-1][k] for k in SHOWN if k in rows[-1]})
    df = pd.DataFrame(rows)
    with atomic_file(Experiment(experiment).table(args.tag)) as tmp:
        df.to_csv(tmp, index=False)
    write_json(Experiment(experiment).study_record(args.tag), {
        "trial": args.trial, "machine": provenance(), "wall_s": round(time.time() - t0, 1), "rows": rows,
        "command": "python -m studies.quantization " + " ".join(args.argv)})
    print(df[[c for c in SHOWN if c in df]].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
