"""What every data source gives the pipeline: ``Splits`` (train / validation / test frames with their label set and
how to load them again) and ``DataError`` (bad or missing input, named with its file, row and fix)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


class DataError(ValueError):
    """Bad or missing input data; the message names the file, row and the fix."""


@dataclass
class Splits:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    checksums: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    val_from: str = "random"
    labels: tuple[str, ...] = ()   # the classes, in the model's output order (RuSentiment: its five)
    dataset: dict = field(default_factory=lambda: {"kind": "rusentiment"})  # how to load it again

    @property
    def has_test(self) -> bool:
        """False for own data given without a test file: figures are then validation-only."""
        return len(self.test) > 0

    def describe(self) -> dict:
        def dist(df):
            return {self.labels[k]: int(v) for k, v in sorted(df["label"].value_counts().items())}
        return {"seed": self.seed, "val_from": self.val_from, "checksums": self.checksums,
                "labels": list(self.labels), "dataset": self.dataset,
                "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
                "classes": {"train": dist(self.train), "val": dist(self.val), "test": dist(self.test)}}
