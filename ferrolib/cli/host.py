"""``ferrolib host``: this host's floating-point code paths (the key of exact digests), or a command run on an
emulated AVX2 host.

    ferrolib host                    # e.g. numba=rocketlake torch=AVX512 mkl=auto openblas=SkylakeX numpy=...
    ferrolib host --avx2 make check  # the command with ferrolib.host.AVX2_EMULATION in its environment

``python -m ferrolib.host`` takes the same options without loading the command line's other modules.
"""
from __future__ import annotations

import argparse

from ferrolib import host


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "host", help="print this host's code-path fingerprint, or run a command on an emulated AVX2 host",
        description=host.__doc__.split("\n\n")[0])
    host.add_arguments(parser)
    parser.set_defaults(func=lambda args: host.run_command(args.avx2))
