"""The documentation names what the code does."""

from __future__ import annotations

import cert_agent.agent.errors
import cert_agent.drivers.errors
import cert_agent.verifier.errors
from cert_agent.common.errors import CertAgentError
from cert_agent.common.messages import MESSAGES
from tests.paths import ROOT

LAYERS = (cert_agent.agent.errors, cert_agent.drivers.errors, cert_agent.verifier.errors)  # each owns its errors


def _all_error_classes() -> list[type[CertAgentError]]:
    """Every error class that names its own code (a base that only shares behaviour, such as the
    verifier's _TriesLeft, names none and is never raised itself)."""
    found: list[type[CertAgentError]] = [CertAgentError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return [cls for cls in found if "code" in cls.__dict__]


def test_every_error_code_is_documented_once() -> None:
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    codes = [cls.code for cls in _all_error_classes()]
    assert len(codes) == len(set(codes)), "two error classes share a code"
    for code in codes:
        assert f"`{code}`" in text, code


def test_every_error_code_has_its_texts_in_the_one_catalog() -> None:
    codes = {cls.code for cls in _all_error_classes()}
    assert codes == set(MESSAGES), codes ^ set(MESSAGES)
    assert all(zh and en for zh, en in MESSAGES.values())


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.index("bash scripts/demo.sh") < readme.index("bash scripts/test.sh")
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_readme_says_pin_max_tries_has_no_default_and_it_has_none() -> None:
    from cert_agent.agent.config import AgentConfig

    line = next(
        line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if "pin_max_tries =" in line
    )
    assert "no default" in line and AgentConfig().pin_max_tries is None
