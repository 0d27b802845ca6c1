"""Summarise an experiment directory into ``<out>/<name>.json`` and ``<out>/<name>.md``.

    python -m analysis.summary --experiment experiments/rusentiment --out results
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def collect(experiment: Path) -> dict:
    if not (experiment / "data.json").is_file():
        raise FileNotFoundError(f"{experiment} is not an experiment directory (no data.json); "
                                f"give --experiment STORAGE/NAME of a search/run.py run")
    out = {"experiment": str(experiment), "data": _load(experiment / "data.json"),
           "run": _load(experiment / "run.json"), "teacher": _load(experiment / "teacher" / "teacher.json"),
           # the run that trained the teacher, when a later run (the search) reused it
           "teacher_run": _load(experiment / "run_teacher.json") or _load(experiment / "run.json")}
    if (experiment / "trials.csv").is_file():
        trials = pd.read_csv(experiment / "trials.csv")
        out["search"] = _load(experiment / "search.json")
        out["trials"] = trials.to_dict(orient="records")
    return out


def teacher_markdown(s: dict) -> list[str]:
    t, run = s["teacher"], s.get("teacher_run") or {}
    cpu = (run.get("provenance") or {}).get("cpu", {})
    lines = ["## Teacher", "",
             f"Teacher `{t['stage']['teacher']}`, vocabulary {t['vocab']['kept_pieces']} of "
             f"{t['vocab']['original_pieces']} pieces, best configuration: lr {t['best_config']['lr']}, "
             f"{t['best_config']['epochs']} epochs, batch {t['best_config']['batch_size']}, "
             f"pooling {t['best_config']['pooling']}, max length {t['best_config']['max_length']}.", "",
             "| split | accuracy | weighted F1 | macro F1 |", "|---|---|---|---|"]
    for split in ("val", "test"):
        m = t[split]
        lines.append(f"| {split} | {m['accuracy']:.4f} | {m['weighted_f1']:.4f} | {m['macro_f1']:.4f} |")
    lines += ["", "Per trial (validation weighted F1 of the best epoch):", "", "| lr | epochs | best epoch | val weighted F1 |",
              "|---|---|---|---|"]
    for tr in t["trials"]:
        lines.append(f"| {tr['lr']} | {tr['epochs']} | {tr['best_epoch']} | {tr['val_weighted_f1']} |")
    wt = t["wall_time_s"]
    lines += ["", f"Wall time of the teacher stage: {wt['total']:.0f} s ({wt['total'] / 60:.1f} min; fine-tuning "
                  f"{wt['fine_tuning']:.0f} s, the rest is logits on train/val/test).",
              f"Machine: {cpu.get('model')}, {cpu.get('cores')} cores; has {', '.join(cpu.get('simd_flags', []))}; "
              f"lacks {', '.join(cpu.get('lacks', []))}.",
              f"Command: `{(run.get('provenance') or {}).get('command', '?')}`", ""]
    return lines


def search_markdown(s: dict) -> list[str]:
    search, prov = s["search"], (s.get("run") or {}).get("provenance", {})
    lines = ["## Student search", "", f"Command: `{prov.get('command', '?')}`; git commit {prov.get('git_commit')}.", "",
             f"{search['trials']} trials ({search['status_counts']}) in {search['wall_time_s']:.0f} s "
             f"({search['wall_time_s'] / 60:.1f} min).", "",
             "Pareto front (validation int8 weighted F1 vs median batch-1 latency vs size; test figures of the "
             "front members only, never used for selection):", "",
             "| trial | layers x hidden (heads, FFN) | vocab | val wF1 fp32 | val wF1 int8 | test acc | test wF1 | "
             "test macro F1 | p50 ms | p95 ms | batch-32 texts/s | MiB | params |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in search["front"]:
        lines.append(
            f"| {r['trial_id']} | {r['layers']} x {r['hidden']} ({r['heads']}, {r['ffn']}) | {r['vocab_size']} | "
            f"{r['val_weighted_f1']:.4f} | {r['int8_val_weighted_f1']:.4f} | {r.get('test_accuracy', float('nan')):.4f} | "
            f"{r.get('test_weighted_f1', float('nan')):.4f} | {r.get('test_macro_f1', float('nan')):.4f} | "
            f"{r['latency_ms_p50']:.3f} | {r['latency_ms_p95']:.3f} | {r['throughput_b32_per_s']:.0f} | "
            f"{r['size_mib']:.2f} | {int(r['params'])} |")
    return lines + [""]


def write(experiment: Path, out: Path, name: str | None = None) -> tuple[Path, Path]:
    s = collect(experiment)
    name = name or experiment.name
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# Results: {name}", ""]
    if s.get("teacher"):
        md += teacher_markdown(s)
    if s.get("search"):
        md += search_markdown(s)
    d = s["data"]
    md += ["## Data", "", f"Split seed {d['seed']}; sizes {d['sizes']}.", "",
           "| class | train | val | test |", "|---|---|---|---|"]
    for c in d["classes"]["train"]:
        md.append(f"| {c} | {d['classes']['train'][c]} | {d['classes']['val'][c]} | {d['classes']['test'][c]} |")
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    for path, text in ((json_path, json.dumps(s, indent=2, default=str)), (md_path, "\n".join(md) + "\n")):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return json_path, md_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", required=True, type=Path)
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--name", default=None)
    a = p.parse_args(argv)
    try:
        paths = write(a.experiment, a.out, a.name)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("wrote", *paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
