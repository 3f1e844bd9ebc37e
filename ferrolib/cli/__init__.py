"""The ``ferrolib`` command line: one subcommand per step of the pipeline.

Each submodule defines ``register(subparsers)``, which adds its subcommand and sets ``func``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import warnings
from typing import Any

SUBCOMMANDS: tuple[str, ...] = ("data", "device", "fits", "train", "energy", "sweep", "summarize", "check", "study",
                                "splimits", "site", "host")
"""In the order of the pipeline: data, device models, training, sweeps, source data, studies, the site."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ferrolib",
        description="Measured ferroelectric synapses -> device models -> pulsed training -> energy.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"ferrolib.cli.{name}").register(subparsers)
    return parser


def add_workers_option(parser: argparse.ArgumentParser) -> None:
    """``--workers N``: local worker processes (default: the sweep file's ``[run] n_workers``)."""
    parser.add_argument("--workers", type=int,
                        help="local worker processes (default: the sweep file's [run] n_workers)")


def checked_workers(workers: int | None) -> int | None:
    """``--workers`` as given, None when not given; ValueError (before any run) unless it is an integer >= 1."""
    from ..validation import check_positive_int

    return None if workers is None else check_positive_int(workers, "--workers")


TRACEBACK_ENV = "FERROLIB_TRACEBACK"
"""Set to 1 to see the traceback of an unexpected error instead of its one line."""

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130
"""Exit status of a reported error and of an interrupted (Ctrl-C, SIGTERM) command."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM handler: stop like Ctrl-C (cleanup runs, one line, resumable state)."""
    raise KeyboardInterrupt


def _warning_line(message: Any, category: type, filename: str, lineno: int, line: str | None = None) -> str:
    return f"ferrolib: warning: {_one_line(message)}\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ferrolib`` script; returns the exit status. Every error ends in one line
    ``ferrolib <command>: error: <input>: <problem>`` on stderr (exit 2), Ctrl-C and SIGTERM in one line
    ``ferrolib <command>: interrupted ...`` (exit 130); never a traceback (unless ``$FERROLIB_TRACEBACK`` is set)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    previous_format, warnings.formatwarning = warnings.formatwarning, _warning_line
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"ferrolib {args.command}: interrupted; what finished is saved and an interrupted run resumes from its "
              "last checkpoint: run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"ferrolib {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:
        from ..provenance import describe_os_error

        where = f"{error.filename}: " if error.filename else ""
        print(f"ferrolib {args.command}: error: {where}{describe_os_error(error)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # noqa: BLE001 - the command line never shows a traceback
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"ferrolib {args.command}: error: unexpected {type(error).__name__}: {_one_line(error)} (set "
              f"{TRACEBACK_ENV}=1 to see the traceback)", file=sys.stderr)
        return EXIT_ERROR
    finally:
        warnings.formatwarning = previous_format
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
