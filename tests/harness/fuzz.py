"""Shared pieces of the fuzzing suite: the Hypothesis profiles, a count of the cases run (printed
at the end of the test run), and the error codes a reply may carry.

Profiles: ``ci`` (the default: bounded so that the whole suite stays well inside CI's limit) and
``long`` (``CERT_AGENT_FUZZ=long``: the documented longer run, see docs/threat-model.md).
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

from cert_agent.common.errors import CertAgentError

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("CERT_AGENT_FUZZ", "ci"))

CASES: Counter[str] = Counter()  # fuzz cases run, by target


def documented_codes() -> frozenset[str]:
    """Every stable error code (the docs test checks that each is in docs/errors.md)."""
    found: list[type[CertAgentError]] = [CertAgentError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return frozenset(cls.code for cls in found)
