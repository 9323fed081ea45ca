"""Shared pieces of the fuzzing suite: the Hypothesis profiles, a count of the cases run (printed
at the end of the test run), and the error codes a reply may carry.

Profiles: ``ci`` (the default: bounded so that the whole suite stays well inside CI's limit) and
``long`` (``CERT_AGENT_FUZZ=long``: the documented longer run, see docs/threat-model.md).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

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


# --- values of every JSON type, with the edge cases of text that JSON can carry ---------------------

# Text as JSON can carry it, including what Python's json accepts but UTF-8 cannot encode.
edge_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["\ud800", "a\udfffb", "\x00", "😀", "\u202e", "%s%n", "' OR 1=1 --", "../../etc/passwd", "<script>", ""]
    ),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    edge_text,
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(edge_text, inner, max_size=4)


json_values = st.recursive(scalars, _containers, max_leaves=12)
