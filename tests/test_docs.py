"""The documentation names what the code does."""

from __future__ import annotations

from pathlib import Path

from cert_agent.errors import AgentError

ROOT = Path(__file__).resolve().parent.parent


def _all_error_classes() -> list[type[AgentError]]:
    found: list[type[AgentError]] = [AgentError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found


def test_every_error_code_is_documented_once() -> None:
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    codes = [cls.code for cls in _all_error_classes()]
    assert len(codes) == len(set(codes)), "two error classes share a code"
    for code in codes:
        assert f"`{code}`" in text, code


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.index("bash scripts/demo.sh") < readme.index("bash scripts/test.sh")
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
