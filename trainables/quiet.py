"""Known, harmless library warnings, filtered once per process so that a run's console shows the trial table and
the project's own progress (``RUSENTIMENT_KD_WARNINGS=all`` keeps them):

- ONNX Runtime's quantizer logs "Please consider (to run) pre-processing before quantization" on the root logger
  for every model (and INFO lines per tensor, dropped too): a suggestion (shape inference before PTQ); the graphs are fused by ``fuse_for_cpu`` first and
  every int8 model is validated after quantization (``trainables/student.py:validate_int8``).
- torch's ``TracerWarning`` from ``torch.onnx.export`` (tracing turns Python conditions on shapes into constants):
  the exported graph is checked against torch (``tests/test_trained_export.py``) and has dynamic batch and length.
- torch's ``UserWarning`` "Exporting aten::index operator of advanced indexing ..." (negative indices would break
  the graph): the student's graph indexes with non-negative positions only, and the same check against torch covers
  it.
- Optuna's ``ExperimentalWarning`` for the multi-objective search and ``set_metric_names``: features the search
  uses on purpose.

In a trial's worker (``worker=True``) the per-trial progress bars of transformers ("Loading weights", "Writing
model shards") and datasets ("tokenising") go too: the trial table and the project's progress lines say how a
search goes.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings

KNOWN = ("ONNX Runtime's pre-processing hint, torch's TracerWarning and advanced-indexing note in ONNX export, "
         "Optuna's ExperimentalWarning")
# matched by message, so that no library is imported to name its warning class (the CLIs start fast)
TRACER_MESSAGES = (r"(Converting a tensor to a Python|torch\.tensor results are registered as constants|"
                   r"Iterating over a tensor might cause the trace)")
OPTUNA_EXPERIMENTAL = r".*is experimental \(supported from v"
ONNX_INDEX_NOTE = r"Exporting aten::index operator of advanced indexing"
ORT_HINTS = ("Please consider to run pre-processing before quantization", "Please consider pre-processing before quantization")


class _DropOrtHint(logging.Filter):
    """ONNX Runtime's quantizer logs on the root logger: its pre-processing hint, and INFO lines per tensor
    ("Quantization parameters for tensor ... not specified") that drown a report's console."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(ORT_HINTS):
            return False
        return not (record.levelno < logging.WARNING and "onnxruntime" in record.pathname.replace("\\", "/"))


_installed = False


def quiet_known_warnings(worker: bool = False) -> bool:
    """Install the filters above in this process (once); with ``worker``, also turn off the libraries' per-trial
    progress bars. False when ``RUSENTIMENT_KD_WARNINGS=all`` asks to keep everything."""
    global _installed
    if os.environ.get("RUSENTIMENT_KD_WARNINGS", "").lower() == "all":
        return False
    if worker:
        import datasets
        import transformers

        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
    if not _installed:
        logging.getLogger().addFilter(_DropOrtHint())
        warnings.filterwarnings("ignore", message=TRACER_MESSAGES)
        warnings.filterwarnings("ignore", message=OPTUNA_EXPERIMENTAL)
        warnings.filterwarnings("ignore", message=ONNX_INDEX_NOTE)
        if "torch" in sys.modules:  # the class too, where torch is already loaded
            warnings.filterwarnings("ignore", category=sys.modules["torch"].jit.TracerWarning)
        _installed = True
    return True
