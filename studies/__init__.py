"""Research tools beside the product: each answers one question about the search's levers and writes
its own table (``python -m studies.<tool> --help``). They import the stages; no package imports them.

- ``ablation``: one fixed student, one lever per row.
- ``train_students``: chosen students trained outside Ray (longer, or on a lent GPU), results as a table.
- ``teacher_recipes``: teacher fine-tuning recipes and seed ensembles (logits saved to install).
- ``soft_labels``: installs an ensemble's logits as the teacher outputs of a new experiment.
- ``expert_refit``, ``class_bias``: what the exported folders' expert and answers gain from more data, a class bias.
"""


def finish(result: dict, out) -> int:
    """A per-folder study's ending: ``result`` into ``out/results.json`` (when ``out`` is given), one line per row."""
    if out:
        from inference.atomic import write_json

        write_json(out / "results.json", result)
    for r in result["rows"]:
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    return 0
