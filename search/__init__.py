"""The driver: teacher stage, then the student search (Ray Tune + Optuna)."""
