"""Where things are, for tests in any folder."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent  # the repository
SHARED = ROOT.parent / "shared"  # the project's shared facts, beside the repository
