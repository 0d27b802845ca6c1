"""Command lines from dataclasses: a config field declares its option once (``option``), ``add_options`` makes the
argparse options, ``from_args`` the config; ``run_cli`` is every CLI's ending (one error line, exit status 2)."""
from __future__ import annotations

import argparse
import logging
from dataclasses import MISSING, field, fields

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def option(default=MISSING, help: str = "", *, flags: tuple[str, ...] = (), parse=None, nargs=None,
           choices=None, metavar=None):
    """A config field with its command-line option. ``flags``: the option's names (default ``--field-name``);
    ``parse``: the text -> value function (default: the default's type, ``str`` for None); a bool default is a
    switch; ``nargs`` gives a tuple (``"*"`` with no value: an empty tuple); no default: the option is required."""
    return field(default=default, metadata={"help": help, "flags": flags, "parse": parse, "nargs": nargs,
                                            "choices": choices, "metavar": metavar})


def add_options(p: argparse.ArgumentParser, cls, section: str | None = None) -> None:
    """One option per field of the dataclass ``cls`` (an argument group titled by its docstring's first line when
    ``section`` names it); the values land under ``SECTION.FIELD``, read back by ``from_args``."""
    g = p.add_argument_group(f"{section}: {(cls.__doc__ or '').strip().splitlines()[0]}") if section else p
    for f in fields(cls):
        m = f.metadata
        if "flags" not in m:
            continue
        flags = m["flags"] or ("--" + f.name.replace("_", "-"),)
        kw = {"dest": f"{section}.{f.name}" if section else f.name, "help": m["help"]}
        if f.default is MISSING:
            kw["required"] = True
        else:
            kw["default"] = f.default
        if isinstance(f.default, bool):
            kw["action"] = "store_true"
        else:
            kind = m["parse"] or (type(f.default) if f.default not in (None, MISSING) and m["nargs"] is None else str)
            metavar = None if m["choices"] else m["metavar"] or f.name.upper()
            kw.update(type=kind, nargs=m["nargs"], choices=m["choices"], metavar=metavar)
        g.add_argument(*flags, **kw)


def from_args(cls, a: argparse.Namespace, section: str | None = None):
    """The ``cls`` the parsed options give (lists become tuples: configs are hashable and print as typed)."""
    values = {}
    for f in fields(cls):
        if "flags" not in f.metadata:
            continue
        value = getattr(a, f"{section}.{f.name}" if section else f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def run_cli(work, errors: tuple[type[BaseException], ...], log: logging.Logger) -> int:
    """A CLI's common ending: INFO logging, ``work()``; an expected error (``errors``) ends in one logged line and
    exit status 2, no traceback; an int ``work`` returns is the exit status (anything else: 0). The known harmless
    library warnings are filtered first (``modeling/quiet.py``), said in one line."""
    from trainables.quiet import KNOWN, quiet_known_warnings

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if quiet_known_warnings():
        log.info("known harmless library warnings filtered (%s; trainables/quiet.py says why); "
                 "RUSENTIMENT_KD_WARNINGS=all shows them", KNOWN)
    try:
        status = work()
    except errors as e:
        log.error("%s", e)
        return 2
    return status if isinstance(status, int) else 0
