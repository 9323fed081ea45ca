"""The base of every error the product reports, and the errors both sides share.

Every error is a subclass of :class:`CertAgentError` with a class-level ``code`` that never
changes once released (clients switch on it). Its texts come from one catalog
(``cert_agent.common.messages``): Simplified Chinese for the taxpayer, English for logs and
support. Messages never contain a PIN: the classes take no PIN argument, and ``detail`` is meant
for technical context such as a CKR name or a path. Each layer owns its errors:
``cert_agent.drivers.errors``, ``cert_agent.agent.errors``, ``cert_agent.verifier.errors``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cert_agent.common.messages import MESSAGES


class CertAgentError(Exception):
    code: ClassVar[str] = "INTERNAL_ERROR"
    http_status: ClassVar[int] = 500  # how the verifier answers it over HTTP

    def __init__(self, detail: str = "", **fields: Any) -> None:
        self.detail = detail
        self.fields: dict[str, Any] = fields
        super().__init__(self.describe())

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross from token worker processes to the daemon: keep code fields intact.
        return (_restore, (type(self), dict(self.__dict__)))

    @property
    def zh(self) -> str:
        return MESSAGES[self.code][0]

    @property
    def en(self) -> str:
        return MESSAGES[self.code][1]

    def describe(self) -> str:
        text = f"{self.code}: {self.en}"
        return f"{text} ({self.detail})" if self.detail else text

    @property
    def message(self) -> str:
        """The taxpayer-facing text, in Simplified Chinese."""
        return self.zh

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"code": self.code, "message": self.message, "messageEn": self.en}
        if self.detail:
            result["detail"] = self.detail
        result.update(self.fields)
        return result


def _restore(cls: type[CertAgentError], state: dict[str, Any]) -> CertAgentError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error.describe())
    return error


class BadJson(CertAgentError):
    code = "BAD_JSON"
    http_status = 400


class BadRequest(CertAgentError):
    """A field is missing or of the wrong type or value; ``field`` names it."""

    code = "BAD_REQUEST"
    http_status = 400

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", field=field)
