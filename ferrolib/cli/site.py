"""``ferrolib site``: the static site of the executed notebooks, the ``docs/`` pages, the figures and the claims
table (``make site``; open ``OUTPUT/index.html``).

    ferrolib site build/notebooks figures build/site [--claims FILE] [--docs DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "site", help="render the executed notebooks, docs, figures and claims table into a static site (make site)",
        description="Render one HTML page per executed notebook and per docs/*.md page, copy the figures, and "
                    "write an index with the claims table; equations are MathML, so the site works offline.")
    parser.add_argument("notebooks", type=Path, help="folder of executed notebooks (build/notebooks)")
    parser.add_argument("figures", type=Path, help="folder of their figures (figures/)")
    parser.add_argument("output", type=Path, help="site folder to write (build/site)")
    parser.add_argument("--claims", type=Path, default=None, help="claims CSV (default: FIGURES/05_claims.csv)")
    parser.add_argument("--docs", type=Path, default=None, help="folder of Markdown pages (default: docs/)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ferrolib.site import SiteConfig, build_site  # nbconvert and its templates load only for this command

    index = build_site(SiteConfig(args.notebooks, args.figures, args.output, args.claims, args.docs))
    print(f"site: {index}")
    return 0
