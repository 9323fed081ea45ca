"""Errors of the verifier: token validation, the login flows and the HTTP API. Each carries
the HTTP status it is answered with (``http_status``)."""

from __future__ import annotations

from cert_agent.common.errors import CertAgentError


class AuthTokenInvalid(CertAgentError):
    """A login token the verifier refuses. ``reason`` is the Web eID test-vector reason."""

    code = "TOKEN_INVALID"
    http_status = 401
    reason = "invalid"


class AuthTokenMalformed(AuthTokenInvalid):
    code = "TOKEN_MALFORMED"
    reason = "malformed"


class AuthTokenBadFormat(AuthTokenInvalid):
    code = "TOKEN_BAD_FORMAT"
    reason = "bad-format"


class CertBadKeyUsage(AuthTokenInvalid):
    code = "CERT_BAD_KEY_USAGE"
    reason = "bad-key-usage"


class CertBadEku(AuthTokenInvalid):
    code = "CERT_BAD_EKU"
    reason = "bad-eku"


class CertDisallowedPolicy(AuthTokenInvalid):
    code = "CERT_DISALLOWED_POLICY"
    reason = "disallowed-policy"


class CertExpired(AuthTokenInvalid):
    code = "CERT_EXPIRED"
    reason = "cert-expired"


class CertNotYetValid(AuthTokenInvalid):
    code = "CERT_NOT_YET_VALID"
    reason = "cert-not-yet-valid"


class CertUntrusted(AuthTokenInvalid):
    code = "CERT_UNTRUSTED"
    reason = "untrusted-issuer"


class CertRevoked(AuthTokenInvalid):
    code = "CERT_REVOKED"
    reason = "revoked"


class RevocationUnavailable(AuthTokenInvalid):
    code = "REVOCATION_UNAVAILABLE"
    reason = "revocation-unavailable"


class CertStatusUnknown(AuthTokenInvalid):
    """The OCSP responder does not know the certificate: never taken as good."""

    code = "CERT_STATUS_UNKNOWN"
    reason = "cert-status-unknown"


class OcspResponseInvalid(AuthTokenInvalid):
    """An OCSP answer that cannot be believed (wrong signer, stale, another certificate, a
    nonce that is not ours): refused whatever the revocation setting."""

    code = "OCSP_RESPONSE_INVALID"
    reason = "ocsp-response-invalid"


class UnsupportedAlgorithm(AuthTokenInvalid):
    code = "UNSUPPORTED_ALGORITHM"
    reason = "unsupported-algorithm"


class SignatureInvalid(AuthTokenInvalid):
    code = "SIGNATURE_INVALID"
    reason = "signature-invalid"


class Sm2WrongId(SignatureInvalid):
    """An SM2 signature made with another user ID than GM/T 0009's default (OpenSSL 3's empty
    one, typically): it verifies with the empty ID, not with 1234567812345678."""

    code = "SM2_WRONG_ID"


class AlgorithmKeyMismatch(SignatureInvalid):
    """SM2SM3 claimed for a certificate whose key is not SM2, or ES/PS/RS for an SM2 key."""

    code = "ALGORITHM_KEY_MISMATCH"


class Sm2Unavailable(CertAgentError):
    """An SM2 trust anchor is configured, but the system's libcrypto is not OpenSSL 3 with SM2."""

    code = "SM2_UNAVAILABLE"
    http_status = 500


class ChallengeInvalid(CertAgentError):
    code = "CHALLENGE_INVALID"
    http_status = 401


class TaxpayerIdInvalid(CertAgentError):
    code = "TAXPAYER_ID_INVALID"
    http_status = 403


class TaxpayerUnknown(CertAgentError):
    code = "TAXPAYER_UNKNOWN"
    http_status = 403


class NotAnAgency(CertAgentError):
    code = "NOT_AN_AGENCY"
    http_status = 403


class NoRelationship(CertAgentError):
    code = "NO_RELATIONSHIP"
    http_status = 403


class LoginExpired(CertAgentError):
    code = "LOGIN_EXPIRED"
    http_status = 401


class _TriesLeft(CertAgentError):
    """A failed second factor that counts toward the day's lockout: ``triesLeft`` in the fields
    and the message. Not an error of its own (it has no code of its own)."""

    def __init__(self, detail: str = "", *, tries_left: int) -> None:
        self.tries_left = tries_left
        super().__init__(detail, triesLeft=tries_left)

    @property
    def message(self) -> str:
        return f"{self.zh}，今日还可尝试 {self.tries_left} 次"


class SmsCodeIncorrect(_TriesLeft):
    code = "SMS_CODE_INCORRECT"
    http_status = 401


class AccountLocked(CertAgentError):
    """Five consecutive failures in one China Standard Time day; ``until`` is the next 00:00 CST."""

    code = "ACCOUNT_LOCKED"
    http_status = 423

    def __init__(self, until: str, until_text: str) -> None:
        self.until_text = until_text
        super().__init__(until, until=until, untilText=until_text)

    @property
    def message(self) -> str:
        return f"{self.zh}，将于 {self.until_text}（北京时间）自动解锁"


class NotLoggedIn(CertAgentError):
    code = "NOT_LOGGED_IN"
    http_status = 401


class BodyTooLarge(CertAgentError):
    code = "BODY_TOO_LARGE"
    http_status = 413


class RequestTimeout(CertAgentError):
    """A request body that did not arrive in time (a client sending a byte at a time)."""

    code = "REQUEST_TIMEOUT"
    http_status = 408


class SmsRateLimited(CertAgentError):
    """Too many SMS codes for this login, person or phone; ``retryAfter`` is in seconds."""

    code = "SMS_RATE_LIMITED"
    http_status = 429

    def __init__(self, retry_after: int, detail: str = "") -> None:
        super().__init__(detail, retryAfter=retry_after)

    @property
    def message(self) -> str:
        return f"验证码发送过于频繁，请 {self.fields['retryAfter']} 秒后再试"


class SmsUnavailable(CertAgentError):
    """The SMS gateway did not take the message (after its retries)."""

    code = "SMS_UNAVAILABLE"
    http_status = 503


class PhoneMissing(CertAgentError):
    """The person has no phone number on record (FAQ item 15): only 扫码验证 is left."""

    code = "PHONE_MISSING"
    http_status = 409


class ScanWrongPerson(_TriesLeft):
    """The app verified a person other than the one chosen on the page (counted in the lockout)."""

    code = "SCAN_WRONG_PERSON"
    http_status = 401


class ScanFaceFailed(_TriesLeft):
    """The app's face check of the chosen person did not pass (counted in the lockout)."""

    code = "SCAN_FACE_FAILED"
    http_status = 401


class ScanExpired(CertAgentError):
    """The QR code's request is past its time (two minutes): the page shows a new one."""

    code = "SCAN_EXPIRED"
    http_status = 410


class ScanUnknown(CertAgentError):
    """The app sent a request id that was never shown (or is long purged)."""

    code = "SCAN_UNKNOWN"
    http_status = 404


class ScanReplayed(CertAgentError):
    """The request was answered already: each QR code is answered once."""

    code = "SCAN_REPLAYED"
    http_status = 409


class ScanNotCurrent(CertAgentError):
    """The request is not the one its login now waits for: the login was cancelled, timed out,
    finished, or showed a newer QR code."""

    code = "SCAN_NOT_CURRENT"
    http_status = 410


class IdentitySwitchRefused(CertAgentError):
    """身份切换 to an enterprise this login may not switch to: another enterprise than the one the
    certificate names (unless the bureau allows linked ones), or any switch in 代理业务."""

    code = "IDENTITY_SWITCH_REFUSED"
    http_status = 403


class AppUnauthorized(CertAgentError):
    """The caller of the app API is not a registered, unrevoked app with its secret."""

    code = "APP_UNAUTHORIZED"
    http_status = 401


class CrossSiteRequest(CertAgentError):
    code = "CROSS_SITE_REQUEST"
    http_status = 403


class UnsupportedMediaType(CertAgentError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415


class StoreUnavailable(CertAgentError):
    code = "STORE_UNAVAILABLE"
    http_status = 503


class MethodNotAllowed(CertAgentError):
    code = "METHOD_NOT_ALLOWED"
    http_status = 405


class NotFound(CertAgentError):
    code = "NOT_FOUND"
    http_status = 404
