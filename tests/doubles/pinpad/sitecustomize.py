"""Loads the PIN-pad double (``tests/doubles/pinpad_driver.py``) into every process started with this
folder on PYTHONPATH (tests/agent/test_pinpad.py does, and nothing else)."""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[3]))  # the repository, for tests.doubles

from tests.doubles.pinpad_driver import PinPadDriver
from tests.doubles.register import register_double

register_double("pinpad-double", lambda inner: PinPadDriver(inner))  # type: ignore[arg-type]
