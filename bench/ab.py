"""What the side-by-side benchmarks (``bench_*_ab``) share: the two trees to compare."""

from __future__ import annotations

import argparse
from pathlib import Path


def two_trees(description: str | None, count: str, default: int) -> tuple[tuple[Path, Path], int]:
    """The command line: tree A, tree B (default: here), and ``--<count>`` N."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("a", type=Path, help="the tree of version A (a git worktree)")
    parser.add_argument("b", type=Path, nargs="?", default=Path("."), help="the tree of version B (default: here)")
    parser.add_argument(f"--{count}", type=int, default=default)
    arguments = parser.parse_args()
    return (arguments.a, arguments.b), int(getattr(arguments, count))
