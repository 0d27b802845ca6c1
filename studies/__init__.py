"""Research tools beside the product: each answers one question about the search's levers and writes
its own table (``python -m studies.<tool> --help``). They import the stages; no package imports them.

- ``ablation``: one fixed student, one lever per row.
- ``train_students``: chosen students trained outside Ray (longer, or on a lent GPU), results as a table.
- ``teacher_recipes``: teacher fine-tuning recipes and seed ensembles (logits saved to install).
- ``soft_labels``: installs an ensemble's logits as the teacher outputs of a new experiment.
"""
