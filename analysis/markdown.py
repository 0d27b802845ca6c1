"""``report.md`` from the report dictionary built by ``analysis.report``."""
from __future__ import annotations

import math

import pandas as pd

TARGETS = {"test_weighted_f1": (">=", 0.75), "size_mib": ("<=", 5.0), "latency_ms_p50": ("<=", 0.5),
           "speedup_vs_teacher": (">=", 40.0)}


def _f(x, digits=4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def targets_markdown(r: dict) -> list[str]:
    student = r["four_configurations"][-1]
    base = r["baseline"]
    lines = ["## Targets", "", "| target | measured (int8 student) | met |", "|---|---|---|"]
    for key, (op, value) in TARGETS.items():
        got = student[key]
        ok = got >= value if op == ">=" else got <= value
        lines.append(f"| {key} {op} {value} | {_f(got, 3)} | {'yes' if ok else '**no**'} |")
    beats = {k: (student[k] > base[k] if k == "test_weighted_f1" else student[k] < base[k])
             for k in ("test_weighted_f1", "size_mib", "latency_ms_p50")}
    lines.append(f"| beats TF-IDF + LinearSVC on weighted F1 / size / latency ({_f(base['test_weighted_f1'])} / "
                 f"{_f(base['size_mib'], 2)} MiB / {_f(base['latency_ms_p50'], 3)} ms, measured here) | "
                 f"{' / '.join('yes' if v else 'no' for v in beats.values())} | {'yes' if all(beats.values()) else '**no**'} |")
    return lines + [""]


def configs_markdown(r: dict) -> list[str]:
    lines = ["## Four configurations (measured in this run)", "",
             "Latency: batch 1, 1 thread, median and p95 over 300 sampled validation posts, tokenisation apart; "
             "throughput: batches of 32. Test figures on the 2,967 test posts.", "",
             "| configuration | size MiB | params | p50 ms | p95 ms | batch-32 texts/s | test acc | test wF1 | "
             "test macro F1 | compression | speed-up |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in r["four_configurations"]:
        lines.append(f"| {c['name']} | {_f(c['size_mib'], 2)} | {c['params']:,} | {_f(c['latency_ms_p50'], 3)} | "
                     f"{_f(c['latency_ms_p95'], 3)} | {c['throughput_b32_per_s']:.0f} | {_f(c['test_accuracy'])} | "
                     f"{_f(c['test_weighted_f1'])} | {_f(c['test_macro_f1'])} | {c['compression_vs_teacher']:.1f}x | "
                     f"{c['speedup_vs_teacher']:.1f}x |")
    b = r["baseline"]
    lines += ["", f"Baseline, same split: {b['name']} (C={b['C']} chosen on validation): test accuracy "
                  f"{_f(b['test_accuracy'])}, weighted F1 {_f(b['test_weighted_f1'])}, macro F1 {_f(b['test_macro_f1'])}; "
                  f"{_f(b['size_mib'], 2)} MiB pickled; p50 {_f(b['latency_ms_p50'], 3)} ms, p95 "
                  f"{_f(b['latency_ms_p95'], 3)} ms per text (1 thread).", ""]
    return lines


def chosen_markdown(r: dict) -> list[str]:
    c = r["chosen"]
    keys = ("layers", "hidden", "heads", "ffn", "vocab", "vocab_size", "kd_alpha", "kd_temperature", "lr", "epochs",
            "init", "transfer", "feature_kd", "hidden_kd")
    cm = r["confusion_matrix"]
    lines = ["## Chosen student", "", f"Trial `{c['trial_id']}` ({r['selection']['rule']}; limits: "
             f"latency {r['selection']['max_latency_ms']} ms, size {r['selection']['max_size_mb']} MiB).", "",
             "Configuration: " + ", ".join(f"{k}={c.get(k)}" for k in keys if k in c) + ".", "",
             "Per-class F1 (int8, test): " + ", ".join(f"{k} {v:.3f}" for k, v in r["per_class_f1"].items()) + ".", "",
             "Confusion matrix (rows: true, columns: predicted):", "",
             "| | " + " | ".join(cm["labels"]) + " |", "|---" * (len(cm["labels"]) + 1) + "|"]
    for label, row in zip(cm["labels"], cm["rows_true_cols_pred"]):
        lines.append(f"| {label} | " + " | ".join(map(str, row)) + " |")
    return lines + [""]


def search_markdown(r: dict) -> list[str]:
    s, prov = r["search"], (r.get("run") or {}).get("provenance", {})
    lines = ["## Student search", "", f"Command: `{prov.get('command', '?')}`; git commit {prov.get('git_commit')}.", "",
             f"{s['trials']} trials ({s['status_counts']}) in {s['wall_time_s']:.0f} s ({s['wall_time_s'] / 60:.1f} min).",
             "", "Pareto front (int8 validation weighted F1 vs median latency vs size; test figures for front "
             "members only, never used for selection):", "",
             "| trial | layers x hidden (heads, FFN) | vocab | transfer | feature KD | hidden KD | val wF1 fp32 | "
             "val wF1 int8 | test wF1 | p50 ms | MiB | params |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in s["front"]:
        lines.append(f"| {m['trial_id']} | {m['layers']} x {m['hidden']} ({m['heads']}, {m['ffn']}) | {m['vocab_size']} | "
                     f"{m.get('transfer', 'none')} | {m.get('feature_kd', 0)} | {m.get('hidden_kd', 0)} | {_f(m['val_weighted_f1'])} | "
                     f"{_f(m['int8_val_weighted_f1'])} | {_f(m.get('test_weighted_f1'))} | {_f(m['latency_ms_p50'], 3)} | "
                     f"{_f(m['size_mib'], 2)} | {int(m['params']):,} |")
    costs = r.get("option_costs") or []
    if costs:
        lines += ["", "What each option costs (all trials; median training seconds per round = a quarter epoch, "
                  "1 thread; medians mix the architectures the trials drew):", "",
                  "| option | value | trials | median train s / round | median params | best int8 val wF1 |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {c['option']} | {c['value']} | {c['trials']} | {c['median_round_train_s']:.1f} | "
                  f"{c['median_params']:,.0f} | {_f(c['best_int8_val_weighted_f1'])} |" for c in costs]
    return lines + [""]


def teacher_markdown(r: dict) -> list[str]:
    t, run = r["teacher"], r.get("teacher_run") or r.get("run") or {}
    wt = t["wall_time_s"]
    lines = ["## Teacher", "", f"`{t['stage']['teacher']}`, vocabulary {t['vocab']['kept_pieces']} of "
             f"{t['vocab']['original_pieces']} pieces; lr {t['best_config']['lr']}, {t['best_config']['epochs']} epochs, "
             f"pooling {t['best_config']['pooling']}. Stage wall time {wt['total']:.0f} s. Command: "
             f"`{(run.get('provenance') or {}).get('command', '?')}`.", ""] + _split_table("split", t)
    soft = t.get("soft_labels")
    if soft:
        lines += ["", f"Distillation targets (soft labels) in this experiment come from a teacher {soft['tag']}"
                  f" ({', '.join(soft['members'] or [])}; `python -m search.teacher_recipes` on {soft['device']}, "
                  f"installed with `python -m search.soft_labels`), not from the single teacher above, which is kept "
                  f"for student initialisation and the configuration table:", ""] + _split_table("soft labels", soft)
    return lines + [""]


def _split_table(title: str, metrics: dict) -> list[str]:
    """Accuracy / weighted F1 / macro F1 on validation and test."""
    return [f"| {title} | accuracy | weighted F1 | macro F1 |", "|---|---|---|---|"] + [
        f"| {s} | {metrics[s]['accuracy']:.4f} | {metrics[s]['weighted_f1']:.4f} | {metrics[s]['macro_f1']:.4f} |"
        for s in ("val", "test")]


def transfer_markdown(r: dict) -> list[str]:
    lines = []
    if r.get("transfer_sets"):
        lines += ["## Transfer sets (teacher-labelled, from training posts only)", "",
                  "| set | posts | labelled by | labelling s | teacher argmax classes | mean teacher confidence |",
                  "|---|---|---|---|---|---|"]
        for t in r["transfer_sets"]:
            took = f"{t['labelling_s']:.0f}" if t.get("labelling_s") is not None else "n/a"
            lines.append(f"| {t['name']} | {t['size']} | {t.get('labelled_by', 'the teacher, this machine')} | {took} | "
                         f"{t['teacher_argmax_classes']} | {t['mean_teacher_confidence']:.3f} |")
        lines.append("")
    if r.get("ablation"):
        a = pd.DataFrame(r["ablation"])
        lines += ["## Ablation: each lever on one fixed student", "",
                  "| study | student | epochs | transfer | feature KD | hidden KD | int8 val wF1 | "
                  "delta vs plain KD (same study) | int8 test wF1 | train s per round |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for _, x in a.iterrows():
            student = f"{x.layers}x{x.hidden} ffn{x.ffn} vocab{x.vocab}"
            hk = x.get("hidden_kd")
            hk = 0.0 if hk is None or pd.isna(hk) else hk
            lines.append(f"| {x.get('study', 'ablation')} | {student} | {x.epochs} | {x.transfer} | {x.feature_kd} | {hk} | "
                         f"{_f(x.int8_val_weighted_f1)} | "
                         f"{_f(x.get('delta_int8_val_weighted_f1'))} | {_f(x.get('test_weighted_f1'))} | "
                         f"{_f(x.round_train_s, 0)} |")
        lines.append("")
    return lines


def report_markdown(r: dict, trials: pd.DataFrame, front: pd.DataFrame) -> str:
    m = r["machine"]["cpu"]
    d = r["data"]
    md = ["# RuSentiment distillation report", "",
          f"Machine: {m['model']}, {m['cores']} cores; has {', '.join(m['simd_flags'])}; lacks {', '.join(m['lacks'])}. "
          f"Report command: `{r['machine']['command']}`, git {r['machine']['git_commit']}.", ""]
    md += targets_markdown(r) + configs_markdown(r)
    md += ["## Pareto plots", ""] + [f"![{p}]({p})" for p in r["plots"]] + [""]
    md += chosen_markdown(r) + search_markdown(r) + transfer_markdown(r) + teacher_markdown(r)
    md += ["## Data", "", f"Validation split: seed {d['seed']}, stratified, carved from the training files; sizes "
           f"{d['sizes']}.", "", "| class | train | val | test |", "|---|---|---|---|"]
    for c in d["classes"]["train"]:
        md.append(f"| {c} | {d['classes']['train'][c]} | {d['classes']['val'][c]} | {d['classes']['test'][c]} |")
    return "\n".join(md) + "\n"
