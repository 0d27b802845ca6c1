"""Known, harmless library warnings, filtered once per process so that a run's console shows the trial table and
the project's own progress (``RUSENTIMENT_KD_WARNINGS=all`` keeps them):

- ONNX Runtime's quantizer logs "Please consider (to run) pre-processing before quantization" on the root logger
  for every model: a suggestion (shape inference before PTQ); the graphs are fused by ``fuse_for_cpu`` first and
  every int8 model is validated after quantization (``trainables/student.py:validate_int8``).
- torch's ``TracerWarning`` from ``torch.onnx.export`` (tracing turns Python conditions on shapes into constants):
  the exported graph is checked against torch (``tests/test_trained_export.py``) and has dynamic batch and length.
- Optuna's ``ExperimentalWarning`` for the multi-objective search and ``set_metric_names``: features the search
  uses on purpose.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings

KNOWN = "ONNX Runtime's pre-processing hint, torch's TracerWarning in ONNX export, Optuna's ExperimentalWarning"
# matched by message, so that no library is imported to name its warning class (the CLIs start fast)
TRACER_MESSAGES = (r"(Converting a tensor to a Python|torch\.tensor results are registered as constants|"
                   r"Iterating over a tensor might cause the trace)")
OPTUNA_EXPERIMENTAL = r".*is experimental \(supported from v"
ORT_HINTS = ("Please consider to run pre-processing before quantization", "Please consider pre-processing before quantization")


class _DropOrtHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(ORT_HINTS)


_installed = False


def quiet_known_warnings() -> bool:
    """Install the filters above in this process (once); False when ``RUSENTIMENT_KD_WARNINGS=all`` asks to keep
    them."""
    global _installed
    if os.environ.get("RUSENTIMENT_KD_WARNINGS", "").lower() == "all":
        return False
    if not _installed:
        logging.getLogger().addFilter(_DropOrtHint())
        warnings.filterwarnings("ignore", message=TRACER_MESSAGES)
        warnings.filterwarnings("ignore", message=OPTUNA_EXPERIMENTAL)
        if "torch" in sys.modules:  # the class too, where torch is already loaded
            warnings.filterwarnings("ignore", category=sys.modules["torch"].jit.TracerWarning)
        _installed = True
    return True
