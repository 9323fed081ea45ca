"""``AuthTokenValidator``: the checks in order, with the caches of parsed certificates and
validated paths, and the OCSP responder's last word (for health)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.authority import AuthorityWithCert
from pyhanko_certvalidator.errors import (
    CRLValidationError,
    ExpiredError,
    InsufficientRevinfoError,
    NotYetValidError,
    OCSPValidationError,
    PathBuildingError,
    PathError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.path import ValidationPath

from cert_agent.verifier import sm2
from cert_agent.verifier.errors import (
    AuthTokenInvalid,
    AuthTokenMalformed,
    CertExpired,
    CertNotYetValid,
    CertRevoked,
    CertStatusUnknown,
    CertUntrusted,
    OcspResponseInvalid,
    RevocationUnavailable,
    Sm2Unavailable,
)
from cert_agent.verifier.ocsp import OcspSettings, check_ocsp
from cert_agent.verifier.validation.checks import (
    anchor_validities,
    check_algorithm,
    check_format,
    check_policies,
    check_purpose,
    check_signature,
    check_validity,
)
from cert_agent.verifier.validation.parsing import (
    CertificateFacts,
    ParsedAuthToken,
    ValidatedAuthToken,
    decode_base64,
    is_sm2_key,
    parse_auth_token,
)
from cert_agent.verifier.validation.settings import REVOCATION_MODES, ValidatorSettings
from cert_agent.verifier.validation.sm2_chain import SM2_SIGNATURE_VALIDATOR

log = logging.getLogger("cert_agent.verifier.validation")

FACTS_CACHE_SIZE = 4096  # parsed certificates kept, oldest dropped first


class AuthTokenValidator:
    """Validates tokens for one relying party (``settings``); keeps parsed certificates and
    validated paths between calls."""

    def __init__(self, settings: ValidatorSettings, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.settings = settings
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._anchors = [asn1_x509.Certificate.load(der) for der in settings.trust_anchors]
        if any(is_sm2_key(anchor) for anchor in self._anchors) and not sm2.available():
            raise Sm2Unavailable("an SM2 trust anchor is configured; the system's libcrypto has no SM2")
        self._anchor_validity = anchor_validities(self._anchors)
        self._intermediates = [asn1_x509.Certificate.load(der) for der in settings.intermediates]
        self._path_cache: dict[bytes, tuple[float, AuthTokenInvalid | None]] = {}
        self.ocsp_status = OcspStatus()  # the last exchange with the OCSP responder, for health
        self._facts: dict[bytes, CertificateFacts] = {}

    async def validate(self, auth_token: Any, nonce: str, at: dt.datetime | None = None) -> ValidatedAuthToken:
        """Run the checks in order on ``auth_token`` (the JSON object the agent made) for the
        challenge ``nonce``; the first failure is raised, else the login identity. ``at`` pins
        the validation time (support, test vectors): then no path is cached."""
        moment = at or self._clock()
        parsed = parse_auth_token(auth_token)
        check_format(parsed)
        certificate = self.check_certificate(parsed)
        check_purpose(certificate)
        check_policies(certificate, self.settings.disallowed_policies)
        check_validity(certificate, self._anchor_validity, moment)
        await self.check_chain(certificate, moment, cache=at is None)
        algorithm = check_algorithm(parsed)
        check_signature(parsed, certificate, algorithm, self.settings.origin, nonce)
        return ValidatedAuthToken(
            certificate_der=certificate.der,
            subject=certificate.subject,
            subject_cn=certificate.subject_cn,
            taxpayer_id=certificate.taxpayer_id,
            algorithm=algorithm.value,
        )

    def check_certificate(self, token: ParsedAuthToken) -> CertificateFacts:
        """Check 3: the certificate decodes (parsed once per certificate, then kept)."""
        der = decode_base64(token.certificate, "unverifiedCertificate")
        key = hashlib.sha256(der).digest()
        facts = self._facts.get(key)
        if facts is None:
            try:
                facts = CertificateFacts.parse(der)
            except (
                ValueError,
                TypeError,
                KeyError,
                IndexError,
                UnsupportedAlgorithm,
            ) as exc:  # asn1crypto: IndexError too
                raise AuthTokenMalformed(f"unverifiedCertificate: {type(exc).__name__}") from None
            if len(self._facts) >= FACTS_CACHE_SIZE:
                self._facts.pop(next(iter(self._facts)))
            self._facts[key] = facts
        return facts

    async def check_chain(self, certificate: CertificateFacts, at: dt.datetime, *, cache: bool) -> None:
        """Check 7: a path to a trust anchor, unrevoked. A result (good or bad) is kept for
        ``path_cache_seconds`` unless the time is pinned."""
        if not cache:
            await self._validate_path(certificate, at)
            return
        key = hashlib.sha256(certificate.der).digest()
        cached = self._path_cache.get(key)
        if cached and cached[0] > time.monotonic():
            if cached[1] is not None:
                raise cached[1]
            return
        error: AuthTokenInvalid | None = None
        try:
            await self._validate_path(certificate, at)
        except AuthTokenInvalid as exc:
            error = exc
        self._path_cache[key] = (time.monotonic() + self.settings.path_cache_seconds, error)
        if error is not None:
            raise error

    async def _validate_path(self, certificate: CertificateFacts, at: dt.datetime) -> None:
        """The path by pyhanko-certvalidator, revocation by its CRLs; or, with OCSP configured,
        the path alone and then the responder's answer about the taxpayer certificate (the
        trust anchor should then be the issuing CA, as the Web eID validators recommend)."""
        ocsp_settings = self.settings.ocsp if self.settings.revocation != "off" else None
        context = ValidationContext(
            trust_roots=self._anchors,
            other_certs=self._intermediates,
            moment=at,
            revocation_mode="none" if ocsp_settings else REVOCATION_MODES[self.settings.revocation],
            crls=[] if ocsp_settings else list(self.settings.crls),
            allow_fetching=self.settings.allow_fetching and self.settings.revocation != "off" and not ocsp_settings,
            signature_validator=SM2_SIGNATURE_VALIDATOR,  # SM2 CAs beside RSA and ECDSA ones
        )
        validator = CertificateValidator(
            certificate.cert, intermediate_certs=self._intermediates, validation_context=context
        )
        try:
            path = await validator.async_validate_path()
        except RevokedError:
            raise CertRevoked() from None
        except (InsufficientRevinfoError, CRLValidationError, OCSPValidationError) as exc:
            raise RevocationUnavailable(type(exc).__name__) from None
        except ExpiredError:
            raise CertExpired("a certificate of the chain") from None
        except NotYetValidError:
            raise CertNotYetValid("a certificate of the chain") from None
        except PathBuildingError:
            raise CertUntrusted("no path to a trust anchor") from None
        except (ValidationError, PathError) as exc:
            raise CertUntrusted(type(exc).__name__) from None
        if ocsp_settings is not None:
            await self._check_ocsp(certificate, path, ocsp_settings, at)

    async def _check_ocsp(
        self, certificate: CertificateFacts, path: ValidationPath, settings: OcspSettings, at: dt.datetime
    ) -> None:
        issuer = path.find_issuing_authority(path.leaf)
        issuer_der = issuer.certificate.dump() if isinstance(issuer, AuthorityWithCert) else None
        try:
            if issuer_der is None:
                raise RevocationUnavailable("the issuer's certificate is needed to ask OCSP")
            leaf = x509.load_der_x509_certificate(certificate.der)
            await check_ocsp(leaf, x509.load_der_x509_certificate(issuer_der), settings, at)
            self.ocsp_status.answered(at)
        except (CertRevoked, CertStatusUnknown):
            self.ocsp_status.answered(at)  # the responder answered: that the answer is "no" is the token's fault
            raise
        except (ValueError, x509.InvalidVersion):
            self.ocsp_status.failed(at, "certificate unreadable")
            raise RevocationUnavailable("the certificate cannot be read for OCSP") from None
        except (RevocationUnavailable, OcspResponseInvalid) as exc:
            self.ocsp_status.failed(at, exc.code)
            if isinstance(exc, OcspResponseInvalid) or self.settings.revocation != "fail-open":
                raise
            log.warning("fail-open: login allowed without a revocation answer (%s)", exc.describe())


@dataclass
class OcspStatus:
    """When the responder last answered, and when and why it last did not."""

    last_answer_at: dt.datetime | None = None
    last_failure_at: dt.datetime | None = None
    last_failure: str = ""

    def answered(self, at: dt.datetime) -> None:
        self.last_answer_at = at

    def failed(self, at: dt.datetime, reason: str) -> None:
        self.last_failure_at, self.last_failure = at, reason

    @property
    def failing(self) -> bool:
        """The last exchange failed."""
        return self.last_failure_at is not None and (
            self.last_answer_at is None or self.last_failure_at > self.last_answer_at
        )
