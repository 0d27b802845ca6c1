"""Exported students beside the fair TF-IDF baseline (and the teacher), in one run on a quiet machine:

    python -m studies.versus_tfidf --models inference/models/rusentiment-student OTHER_FOLDER ... \\
        --data-dir ../shared/data/rusentiment --experiment experiments/rusentiment --rounds 5 --out results/versus-tfidf

For each model folder (through ``SentimentClassifier``, the torch-free runtime): RuSentiment test and
RuSentiTweet weighted F1 with bootstrap 95 % intervals and the paired difference to TF-IDF over the same
posts. TF-IDF + LinearSVC is trained as a user would (``analysis.baseline``: C by 5-fold cross-validation over
train + validation, then refitted on all of them), in this run. Latency: end to end, text in -> class scores out, batch 1, 1 thread,
the same sampled validation posts for every system (``inference.benchmark.benchmark_runner`` for the
students, ``analysis.baseline.tfidf_latency_ms`` for TF-IDF); ``--rounds`` rounds, the order of the systems
rotated each round, so a slow minute of the machine falls on each system in turn. Reported: the median of the
per-round medians, their range, and each student's per-round latency ratio to TF-IDF (paired by round).
With ``--experiment``, the fp32 torch teacher is timed once the same way (the report's speed-up). Selection
is not made here: test figures are for reporting the folders chosen elsewhere (on validation).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

log = logging.getLogger("studies.versus_tfidf")


def _splits(data_dir: str | None, experiment: Path | None):
    from corpus import load_splits, splits_from_record
    from search.experiment import Experiment

    if experiment is not None and Experiment(experiment).data.is_file():
        return splits_from_record(Experiment(experiment).record("data"), data_dir)
    return load_splits(data_dir)


def run(models: list[Path], data_dir: str | None, experiment: Path | None, rounds: int, n_latency: int) -> dict:
    from analysis.baseline import tfidf_baseline, tfidf_latency_ms
    from analysis.report import versus_baseline
    from corpus.rusentiment import ood_test_for
    from inference import SentimentClassifier
    from inference.benchmark import benchmark_runner, folder_size_mib
    from modeling import classification_metrics
    from modeling.metrics import bootstrap_interval
    from search.provenance import cpu_info, git_commit

    t0 = time.time()
    splits = _splits(data_dir, experiment)
    ood = ood_test_for(splits)
    base, base_pred, pipeline = tfidf_baseline(splits, ood=ood, return_model=True)
    names = [m.name if m.name != "model" else m.parent.name for m in models]
    if len(set(names)) < len(names):
        names = [str(m) for m in models]
    rows = {}
    for name, folder in zip(names, models):
        clf = SentimentClassifier.load(folder, threads=2)
        row, pred = {"model": name, "size_mib": folder_size_mib(folder), "fused": clf.fused,
                     "expert_weight": clf.expert_weight}, {}
        for split, df in (("test", splits.test), ("ood", ood)):
            if df is None:
                continue
            pred[split] = clf.logits(df.text.tolist(), 64).argmax(1)
            y = df.label.to_numpy()
            row[f"{split}_weighted_f1"] = classification_metrics(y, pred[split])["weighted_f1"]
            row[f"{split}_wf1_low"], row[f"{split}_wf1_high"] = bootstrap_interval(y, pred[split])
        row["minus_tfidf"] = versus_baseline(splits, ood, pred, base_pred)
        rows[name] = row
        log.info("%s: test wF1 %.4f, %.2f MiB", name, row["test_weighted_f1"], row["size_mib"])
    timers = {name: SentimentClassifier.load(folder, threads=1) for name, folder in zip(names, models)}
    val = splits.val.text.tolist()
    systems = [*names, "tfidf"]
    per_round: dict[str, list[float]] = {s: [] for s in systems}
    for r in range(rounds):
        order = systems[r % len(systems):] + systems[:r % len(systems)]
        for s in order:
            if s == "tfidf":
                ms = float(np.median(tfidf_latency_ms(pipeline, val, n_latency)[0]))
            else:
                ms = benchmark_runner(timers[s], val, rows[s]["size_mib"], n_latency=n_latency)["e2e_ms_p50"]
            per_round[s].append(ms)
        log.info("round %d of %d: %s", r + 1, rounds, ", ".join(f"{s} {per_round[s][-1]:.3f} ms" for s in systems))
    tf = np.array(per_round["tfidf"])
    latency = {s: {"e2e_ms_p50": float(np.median(v)), "e2e_ms_min": float(np.min(v)), "e2e_ms_max": float(np.max(v)),
                   "rounds_ms": [round(x, 4) for x in v]} for s, v in per_round.items()}
    for s in names:
        ratio = np.array(per_round[s]) / tf
        latency[s].update(ratio_to_tfidf=float(np.median(ratio)), ratio_min=float(ratio.min()), ratio_max=float(ratio.max()))
    teacher = None
    from search.experiment import Experiment

    if experiment is not None and Experiment(experiment).teacher_model.is_dir():
        from analysis.report import TorchRunner, _dir_mib
        from modeling import EncoderClassifier

        model, tok = EncoderClassifier.load(Experiment(experiment).teacher_model)
        bench = benchmark_runner(TorchRunner(model, tok, 1), val, _dir_mib(Experiment(experiment).teacher_model),
                                 n_latency=min(n_latency, 150))
        teacher = {"e2e_ms_p50": bench["e2e_ms_p50"], "size_mib": bench["size_mib"],
                   "speedup": {s: bench["e2e_ms_p50"] / latency[s]["e2e_ms_p50"] for s in names}}
    rusentiment = (splits.dataset or {}).get("kind", "rusentiment") == "rusentiment"
    test_name = "RuSentiment test" if rusentiment else "the own data's test file"
    return {"machine": cpu_info(), "commit": git_commit(), "rounds": rounds, "n_latency": n_latency,
            "test_name": test_name, "ood_name": "RuSentiTweet test" if ood is not None else None,
            "tfidf": {k: v for k, v in base.items() if k not in ("e2e_ms_p50", "latency_ms_p50", "latency_ms_p95")},
            "models": rows, "latency": latency, "teacher": teacher, "wall_s": round(time.time() - t0, 1)}


def markdown(out: dict) -> str:
    lat, tf = out["latency"], out["tfidf"]
    ood_name = out.get("ood_name", "RuSentiTweet test")  # records before the key: RuSentiment with RuSentiTweet
    md = ["# Students beside the fair TF-IDF baseline (one run)", "",
          f"Machine: {out['machine']['model']}, {out['machine']['cores']} cores, has {', '.join(out['machine']['simd_flags'])}; "
          f"commit {out['commit']}. Latency: end to end, batch 1, 1 thread, median of {out['rounds']} rounds' medians "
          f"({out['n_latency']} validation posts each; range in brackets). Test = {out.get('test_name', 'RuSentiment test')}"
          + (f", OOD = {ood_name}" if ood_name else " (no out-of-domain test)") + "; "
          "95 % bootstrap intervals; differences paired over the same posts.", "",
          "| system | MiB | e2e p50 ms [range] | x TF-IDF latency [range] | test wF1 | test minus TF-IDF |"
          + (" OOD wF1 | OOD minus TF-IDF |" if ood_name else ""), "|---" * (8 if ood_name else 6) + "|"]
    for name, r in out["models"].items():
        la, d = lat[name], r["minus_tfidf"]
        dt = d.get("test", {})
        do = d.get("ood", {})
        md.append(f"| {name}{' (+ gold expert, w %.2f)' % r['expert_weight'] if r['fused'] else ''} | {r['size_mib']:.2f} | "
                  f"{la['e2e_ms_p50']:.3f} [{la['e2e_ms_min']:.3f}, {la['e2e_ms_max']:.3f}] | "
                  f"{la['ratio_to_tfidf']:.2f} [{la['ratio_min']:.2f}, {la['ratio_max']:.2f}] | "
                  f"{r['test_weighted_f1']:.4f} [{r['test_wf1_low']:.3f}, {r['test_wf1_high']:.3f}] | "
                  f"{dt.get('diff', float('nan')):+.4f} [{dt.get('low', float('nan')):+.3f}, {dt.get('high', float('nan')):+.3f}] |"
                  + (f" {r.get('ood_weighted_f1', float('nan')):.4f} | "
                     f"{do.get('diff', float('nan')):+.4f} [{do.get('low', float('nan')):+.3f}, "
                     f"{do.get('high', float('nan')):+.3f}] |" if ood_name else ""))
    lt = lat["tfidf"]
    md.append(f"| {tf['name']} (C={tf['C']}) | {tf['size_mib']:.2f} | {lt['e2e_ms_p50']:.3f} [{lt['e2e_ms_min']:.3f}, "
              f"{lt['e2e_ms_max']:.3f}] | 1 | {tf['test_weighted_f1']:.4f} [{tf['test_wf1_low']:.3f}, {tf['test_wf1_high']:.3f}] | - |"
              + (f" {tf.get('ood_weighted_f1', float('nan')):.4f} | - |" if ood_name else ""))
    if out["teacher"]:
        t = out["teacher"]
        md += ["", f"Teacher (fp32, torch, 1 thread): {t['e2e_ms_p50']:.2f} ms end to end, {t['size_mib']:.1f} MiB; speed-up: "
               + ", ".join(f"{s} {v:.1f}x" for s, v in t["speedup"].items()) + "."]
    return "\n".join(md) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.versus_tfidf", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", type=Path, required=True, help="exported model folders")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--experiment", type=Path, default=None, help="its splits (data.json) and its teacher, timed too")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n-latency", type=int, default=300)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from inference.atomic import write_json, write_text

    missing = [str(m) for m in a.models if not (m / "config.json").is_file()]
    if missing:
        log.error("not exported model folders (no config.json): %s", ", ".join(missing))
        return 2
    out = run(a.models, a.data_dir, a.experiment, a.rounds, a.n_latency)
    a.out.mkdir(parents=True, exist_ok=True)
    write_json(a.out / "results.json", out)
    write_text(a.out / "report.md", markdown(out))
    print(markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
