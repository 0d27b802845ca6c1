"""Read an experiment directory and write the results (JSON + markdown)."""
