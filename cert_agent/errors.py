"""Errors with stable codes.

Every error the agent reports is a subclass of :class:`AgentError` with a class-level ``code``
that never changes once released (clients switch on it), a Simplified Chinese message for the
taxpayer and an English one for logs and support. Messages never contain a PIN: the classes take
no PIN argument, and ``detail`` is meant for technical context such as a CKR name or a path.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AgentError(Exception):
    code: ClassVar[str] = "INTERNAL_ERROR"
    zh: ClassVar[str] = "证书助手内部错误"
    en: ClassVar[str] = "internal error"

    def __init__(self, detail: str = "", **fields: Any) -> None:
        self.detail = detail
        self.fields: dict[str, Any] = fields
        super().__init__(self.describe())

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross from token worker processes to the daemon: keep code fields intact.
        return (_restore, (type(self), dict(self.__dict__)))

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


def _restore(cls: type[AgentError], state: dict[str, Any]) -> AgentError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error.describe())
    return error


# --- modules and tokens -------------------------------------------------------------------


class ModuleLoadFailed(AgentError):
    code = "MODULE_LOAD_FAILED"
    zh = "无法加载证书介质驱动（PKCS#11 模块），请确认驱动已安装"
    en = "the PKCS#11 module could not be loaded"


class TokenNotFound(AgentError):
    code = "TOKEN_NOT_FOUND"
    zh = "未找到指定的证书介质，请插入税务UKey、金税盘或税控盘"
    en = "no token matches the request"


class TokenAmbiguous(AgentError):
    code = "TOKEN_AMBIGUOUS"
    zh = "找到多个同名的证书介质，请只插入一个"
    en = "more than one token matches the request"


class TokenNotPresent(AgentError):
    code = "TOKEN_NOT_PRESENT"
    zh = "证书介质未插入"
    en = "the token is not present"


class DeviceRemoved(AgentError):
    code = "DEVICE_REMOVED"
    zh = "证书介质在操作过程中被拔出，请重新插入后重试"
    en = "the token was removed during the operation"


class DeviceError(AgentError):
    code = "DEVICE_ERROR"
    zh = "证书介质出现故障，请重新插入后重试"
    en = "the token reported a device error"


class TokenWriteProtected(AgentError):
    code = "TOKEN_WRITE_PROTECTED"
    zh = "证书介质处于写保护状态，无法修改证书密码"
    en = "the token is write-protected"


class CertificateNotFound(AgentError):
    code = "CERTIFICATE_NOT_FOUND"
    zh = "证书介质中未找到该证书"
    en = "the certificate is not on the token"


class CertificateUnparsable(AgentError):
    code = "CERTIFICATE_UNPARSABLE"
    zh = "证书格式无法识别"
    en = "the certificate could not be parsed"


class PrivateKeyNotFound(AgentError):
    code = "PRIVATE_KEY_NOT_FOUND"
    zh = "该证书没有对应的私钥，无法用于登录"
    en = "the certificate has no private key on the token"


class MechanismNotSupported(AgentError):
    code = "MECHANISM_NOT_SUPPORTED"
    zh = "证书介质不支持所需的签名算法"
    en = "the token supports no mechanism for this signature algorithm"


class Pkcs11Failure(AgentError):
    """A PKCS#11 return code with no more specific meaning; ``detail`` names the CKR."""

    code = "PKCS11_ERROR"
    zh = "证书介质操作失败"
    en = "the PKCS#11 call failed"


# --- PINs -------------------------------------------------------------------------------------


class PinIncorrect(AgentError):
    """Wrong PIN. ``triesLeft`` is present when the token (or its configured limit) tells it."""

    code = "PIN_INCORRECT"
    zh = "证书密码错误"
    en = "the PIN is incorrect"

    def __init__(self, detail: str = "", *, tries_left: int | None = None) -> None:
        self.tries_left = tries_left
        fields: dict[str, Any] = {} if tries_left is None else {"triesLeft": tries_left}
        super().__init__(detail, **fields)

    @property
    def message(self) -> str:
        if self.tries_left is None:
            return f"{self.zh}，多次输错将锁定证书"
        return f"{self.zh}，还可尝试 {self.tries_left} 次"


class PinLocked(AgentError):
    code = "PIN_LOCKED"
    zh = "证书密码输错次数过多，证书已锁定，请联系主管税务机关或介质服务单位解锁"
    en = "the PIN is locked"


class PinLenRange(AgentError):
    code = "PIN_LEN_RANGE"
    zh = "证书密码长度不符合证书介质的要求"
    en = "the token refused the PIN length"


class PinExpired(AgentError):
    code = "PIN_EXPIRED"
    zh = "证书密码已过期，请先修改证书密码"
    en = "the PIN has expired and must be changed"


class PinPolicyViolation(AgentError):
    """A new PIN refused by the policy before the token is touched; ``rule`` says which."""

    code = "PIN_POLICY"
    zh = "新证书密码不符合要求"
    en = "the new PIN does not meet the policy"

    RULE_TEXT: ClassVar[dict[str, str]] = {
        "length": "新证书密码须为 6 至 16 位",
        "charset": "新证书密码只能包含英文字母、数字和常用符号",
        "same_as_old": "新证书密码不能与原密码相同",
        "initial_pin": "新证书密码不能是初始密码 88888888",
    }

    def __init__(self, rule: str) -> None:
        self.rule = rule
        super().__init__(rule, rule=rule)

    @property
    def message(self) -> str:
        return self.RULE_TEXT.get(self.rule, self.zh)


class PinRequired(AgentError):
    code = "PIN_REQUIRED"
    zh = "请输入证书密码"
    en = "a PIN is required"


# --- the agent daemon ------------------------------------------------------------------------


class TokenTimeout(AgentError):
    code = "TOKEN_TIMEOUT"
    zh = "证书介质长时间无响应，请拔出后重新插入"
    en = "the token did not answer in time"


class WorkerFailed(AgentError):
    code = "WORKER_FAILED"
    zh = "证书介质驱动异常退出，请重试"
    en = "the process serving the token stopped unexpectedly"


class BadJson(AgentError):
    code = "BAD_JSON"
    zh = "请求格式错误"
    en = "the message is not a JSON object"


class BadRequest(AgentError):
    """A field is missing or of the wrong type or value; ``field`` names it."""

    code = "BAD_REQUEST"
    zh = "请求参数错误"
    en = "a request field is missing or invalid"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", field=field)


class UnknownMethod(AgentError):
    code = "UNKNOWN_METHOD"
    zh = "证书助手不支持该操作，请升级证书助手"
    en = "the agent does not know this method"


class UnsupportedProtocol(AgentError):
    code = "UNSUPPORTED_PROTOCOL"
    zh = "证书助手版本与页面不兼容，请升级证书助手"
    en = "the page and the agent share no protocol version"


class RateLimited(AgentError):
    """Too many wrong PINs from this page or connection; ``retryAfter`` is in seconds."""

    code = "RATE_LIMITED"
    zh = "证书密码错误次数过多，请稍后再试"
    en = "too many wrong PINs; try again later"

    def __init__(self, retry_after: int) -> None:
        super().__init__(retryAfter=retry_after)


class AgentAlreadyRunning(AgentError):
    """Another cert-agent process of this user holds the per-user lock (``pid``, ``port``)."""

    code = "AGENT_ALREADY_RUNNING"
    zh = (
        "证书助手已在运行（每个用户只能运行一个）；"
        "修改证书密码请在电子税务局【账户中心】—【税务数字证书】中进行，或先停止证书助手"
    )
    en = "cert-agent is already running for this user"


class ListenFailed(AgentError):
    code = "LISTEN_FAILED"
    zh = "证书助手无法监听本机端口，该端口可能已被其他程序占用"
    en = "the agent cannot listen on its loopback port"


class OriginRefused(AgentError):
    """The WebSocket handshake was refused (HTTP 403): origin or Host not allowed."""

    code = "ORIGIN_REFUSED"
    zh = "该网站未被允许使用证书助手"
    en = "this site may not use the agent"


# --- the verifier: token validation ----------------------------------------------------------


class TokenInvalid(AgentError):
    """A login token the verifier refuses. ``reason`` is the Web eID test-vector reason."""

    code = "TOKEN_INVALID"
    zh = "登录凭证无效，请重新登录"
    en = "the authentication token is invalid"
    reason = "invalid"


class TokenMalformed(TokenInvalid):
    code = "TOKEN_MALFORMED"
    en = "a token field is missing, empty, of the wrong type or undecodable"
    reason = "malformed"


class TokenBadFormat(TokenInvalid):
    code = "TOKEN_BAD_FORMAT"
    en = "the token format is not web-eid:1"
    reason = "bad-format"


class CertBadKeyUsage(TokenInvalid):
    code = "CERT_BAD_KEY_USAGE"
    zh = "该证书不能用于登录（缺少数字签名用途）"
    en = "the certificate has no digitalSignature key usage"
    reason = "bad-key-usage"


class CertBadEku(TokenInvalid):
    code = "CERT_BAD_EKU"
    zh = "该证书不能用于登录（扩展密钥用途不含客户端认证）"
    en = "the certificate's extended key usage lacks clientAuth"
    reason = "bad-eku"


class CertDisallowedPolicy(TokenInvalid):
    code = "CERT_DISALLOWED_POLICY"
    zh = "该证书的证书策略不允许用于登录"
    en = "the certificate carries a disallowed policy"
    reason = "disallowed-policy"


class CertExpired(TokenInvalid):
    code = "CERT_EXPIRED"
    zh = "证书已过期，请到主管税务机关或介质服务单位更新证书"
    en = "the certificate (or its issuer) has expired"
    reason = "cert-expired"


class CertNotYetValid(TokenInvalid):
    code = "CERT_NOT_YET_VALID"
    zh = "证书尚未生效"
    en = "the certificate (or its issuer) is not yet valid"
    reason = "cert-not-yet-valid"


class CertUntrusted(TokenInvalid):
    code = "CERT_UNTRUSTED"
    zh = "该证书不是税务机关认可的证书"
    en = "the certificate does not chain to a trusted authority"
    reason = "untrusted-issuer"


class CertRevoked(TokenInvalid):
    code = "CERT_REVOKED"
    zh = "证书已被吊销，请联系主管税务机关"
    en = "the certificate has been revoked"
    reason = "revoked"


class RevocationUnavailable(TokenInvalid):
    code = "REVOCATION_UNAVAILABLE"
    zh = "暂时无法核验证书状态，请稍后再试"
    en = "the revocation status could not be established"
    reason = "revocation-unavailable"


class UnsupportedAlgorithm(TokenInvalid):
    code = "UNSUPPORTED_ALGORITHM"
    en = "the signature algorithm is not allowed"
    reason = "unsupported-algorithm"


class SignatureInvalid(TokenInvalid):
    code = "SIGNATURE_INVALID"
    en = "the signature does not verify for this origin and challenge"
    reason = "signature-invalid"


# --- the verifier: login flows and its HTTP API ----------------------------------------------


class ChallengeInvalid(AgentError):
    code = "CHALLENGE_INVALID"
    zh = "登录挑战已失效（已使用、已过期或不存在），请重新登录"
    en = "the challenge nonce is unknown, used or expired"


class TaxpayerIdInvalid(AgentError):
    code = "TAXPAYER_ID_INVALID"
    zh = "证书中的纳税人识别号无效"
    en = "the certificate carries no valid taxpayer ID"


class TaxpayerUnknown(AgentError):
    code = "TAXPAYER_UNKNOWN"
    zh = "未查询到该证书对应的纳税人信息"
    en = "no taxpayer is registered for this certificate"


class NotAnAgency(AgentError):
    code = "NOT_AN_AGENCY"
    zh = "该证书不属于代理机构，请在“企业业务”中登录"
    en = "the certificate does not belong to an agency"


class NoRelationship(AgentError):
    code = "NO_RELATIONSHIP"
    zh = "未查询到您与该企业的关联关系信息"
    en = "no relationship with this enterprise is on record"


class LoginExpired(AgentError):
    code = "LOGIN_EXPIRED"
    zh = "登录已超时，请重新登录"
    en = "the login attempt is unknown or has expired"


class SmsCodeIncorrect(AgentError):
    code = "SMS_CODE_INCORRECT"
    zh = "短信验证码错误"
    en = "the SMS code is wrong or has expired"

    def __init__(self, detail: str = "", *, tries_left: int) -> None:
        self.tries_left = tries_left
        super().__init__(detail, triesLeft=tries_left)

    @property
    def message(self) -> str:
        return f"{self.zh}，今日还可尝试 {self.tries_left} 次"


class AccountLocked(AgentError):
    """Five consecutive failures in one China Standard Time day; ``until`` is the next 00:00 CST."""

    code = "ACCOUNT_LOCKED"
    zh = "今日连续验证失败已达 5 次，账号已锁定"
    en = "the account is locked until midnight China Standard Time"

    def __init__(self, until: str, until_text: str) -> None:
        self.until_text = until_text
        super().__init__(until, until=until, untilText=until_text)

    @property
    def message(self) -> str:
        return f"{self.zh}，将于 {self.until_text}（北京时间）自动解锁"


class NotLoggedIn(AgentError):
    code = "NOT_LOGGED_IN"
    zh = "请先登录"
    en = "no valid session"


class BodyTooLarge(AgentError):
    code = "BODY_TOO_LARGE"
    zh = "请求内容过大"
    en = "the request body is too large"


class SmsRateLimited(AgentError):
    """Too many SMS codes for this login, person or phone; ``retryAfter`` is in seconds."""

    code = "SMS_RATE_LIMITED"
    zh = "验证码发送过于频繁，请稍后再试"
    en = "too many SMS codes were sent; try again later"

    def __init__(self, retry_after: int, detail: str = "") -> None:
        super().__init__(detail, retryAfter=retry_after)

    @property
    def message(self) -> str:
        return f"验证码发送过于频繁，请 {self.fields['retryAfter']} 秒后再试"


class CrossSiteRequest(AgentError):
    code = "CROSS_SITE_REQUEST"
    zh = "请求来源不是本网站，已拒绝"
    en = "the request does not come from this site's own pages"


class UnsupportedMediaType(AgentError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    zh = "请求格式错误"
    en = "the request body must be application/json"


class StoreUnavailable(AgentError):
    code = "STORE_UNAVAILABLE"
    zh = "系统繁忙，请稍后再试"
    en = "the database is busy or unavailable; nothing was changed"


class MethodNotAllowed(AgentError):
    code = "METHOD_NOT_ALLOWED"
    zh = "请求方式错误"
    en = "this endpoint does not take that HTTP method"


class NotFound(AgentError):
    code = "NOT_FOUND"
    zh = "请求的内容不存在"
    en = "no such resource"
