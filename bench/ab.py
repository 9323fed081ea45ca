"""What the side-by-side benchmarks (``bench_*_ab``) share: the two trees to compare."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def two_trees(description: str | None, count: str, default: int) -> tuple[tuple[Path, Path], int]:
    """The command line: tree A, tree B (default: here), and ``--<count>`` N."""
    trees, n, _ = two_trees_and_flags(description, count, default)
    return trees, n


def two_trees_and_flags(
    description: str | None, count: str, default: int, flags: Sequence[tuple[str, str]] = ()
) -> tuple[tuple[Path, Path], int, set[str]]:
    """``two_trees``, and the ``--<flag>`` switches of ``flags`` ((name, help) pairs) given."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="the tree of version A (a git worktree)")
    parser.add_argument("b", type=Path, nargs="?", default=Path("."), help="the tree of version B (default: here)")
    parser.add_argument(f"--{count}", type=int, default=default)
    for name, text in flags:
        parser.add_argument(f"--{name}", action="store_true", help=text)
    arguments = parser.parse_args()
    given = {name for name, _ in flags if getattr(arguments, name.replace("-", "_"))}
    return (arguments.a, arguments.b), int(getattr(arguments, count)), given
