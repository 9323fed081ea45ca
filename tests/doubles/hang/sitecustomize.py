"""Loads the hanging-media double (``tests/doubles/hang_driver.py``) into every process started with
this folder on PYTHONPATH (tests/harness/hang.py does)."""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[3]))  # the repository, for tests.doubles

from tests.doubles.hang_driver import HangingDriver
from tests.doubles.register import register_double

register_double("hang-double", lambda inner: HangingDriver(inner))  # type: ignore[arg-type]
