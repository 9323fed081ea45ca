"""Errors of token access (modules, tokens, certificates, PINs), raised by the PKCS#11 driver."""

from __future__ import annotations

from typing import Any, ClassVar

from cert_agent.common.errors import CertAgentError


class ModuleLoadFailed(CertAgentError):
    code = "MODULE_LOAD_FAILED"


class TokenNotFound(CertAgentError):
    code = "TOKEN_NOT_FOUND"


class TokenAmbiguous(CertAgentError):
    code = "TOKEN_AMBIGUOUS"


class TokenNotPresent(CertAgentError):
    code = "TOKEN_NOT_PRESENT"


class DeviceRemoved(CertAgentError):
    code = "DEVICE_REMOVED"


class DeviceError(CertAgentError):
    code = "DEVICE_ERROR"


class TokenWriteProtected(CertAgentError):
    code = "TOKEN_WRITE_PROTECTED"


class CertificateNotFound(CertAgentError):
    code = "CERTIFICATE_NOT_FOUND"


class CertificateUnparsable(CertAgentError):
    code = "CERTIFICATE_UNPARSABLE"


class PrivateKeyNotFound(CertAgentError):
    code = "PRIVATE_KEY_NOT_FOUND"


class MechanismNotSupported(CertAgentError):
    code = "MECHANISM_NOT_SUPPORTED"


class Pkcs11Failure(CertAgentError):
    """A PKCS#11 return code with no more specific meaning; ``detail`` names the CKR."""

    code = "PKCS11_ERROR"


class SkfFailure(CertAgentError):
    """An SKF return code with no more specific meaning; ``detail`` names the call and the SAR."""

    code = "SKF_ERROR"


class SkfGarbage(CertAgentError):
    """An SKF library returned what no conforming library returns (a length past the buffer, a
    list without its end, a non-DER certificate, an all-zero signature): its device only fails."""

    code = "SKF_GARBAGE"


class KeyUnusable(CertAgentError):
    """The certificate's key is of a type the agent cannot sign with (listed, never used)."""

    code = "KEY_UNUSABLE"


class PinIncorrect(CertAgentError):
    """Wrong PIN. ``triesLeft`` is present when the token (or its configured limit) tells it."""

    code = "PIN_INCORRECT"

    def __init__(self, detail: str = "", *, tries_left: int | None = None) -> None:
        self.tries_left = tries_left
        fields: dict[str, Any] = {} if tries_left is None else {"triesLeft": tries_left}
        super().__init__(detail, **fields)

    @property
    def message(self) -> str:
        if self.tries_left is None:
            return f"{self.zh}，多次输错将锁定证书"
        return f"{self.zh}，还可尝试 {self.tries_left} 次"


class PinLocked(CertAgentError):
    code = "PIN_LOCKED"


class PinLenRange(CertAgentError):
    code = "PIN_LEN_RANGE"


class PinExpired(CertAgentError):
    code = "PIN_EXPIRED"


class PinPolicyViolation(CertAgentError):
    """A new PIN refused by the policy before the token is touched; ``rule`` says which."""

    code = "PIN_POLICY"

    RULE_TEXT: ClassVar[dict[str, str]] = {
        "length": "新证书密码须为 6 至 16 位",
        "charset": "新证书密码只能包含英文字母、数字和常用符号",
        "same_as_old": "新证书密码不能与原密码相同",
        "initial_pin": "新证书密码不能是证书介质的初始密码",
    }

    def __init__(self, rule: str) -> None:
        self.rule = rule
        super().__init__(rule, rule=rule)

    @property
    def message(self) -> str:
        return self.RULE_TEXT.get(self.rule, self.zh)


class PinRequired(CertAgentError):
    code = "PIN_REQUIRED"
