"""The ``effres`` command: ``effres score|enhance|evaluate ...``.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``;
the CLI holds no logic of its own beyond parsing and printing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import import_module

# Before torch loads: OpenMP threads that sleep while they wait instead of spinning. On a busy
# machine a spinning thread waits at every layer for one the OS has descheduled; scoring on the
# shared 2-core machine that cost more than half the speed (benchmarks/bench_curate.py). A user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SUBCOMMANDS = ("score", "curate", "enhance", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="effres", description="Effective resolution of face images.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what effres chooses and does")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        import_module(f".{name}", __name__).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # --quiet keeps standard error for errors: no "auto chose ..." lines either (-v wins over it)
    quiet = getattr(args, "quiet", False) and not args.verbose
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR if quiet else logging.WARNING,
                        format="effres: %(message)s")
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
