"""Validation of a Web eID authentication token: parse it once, then a short ordered list of
small checks.

Each check either passes or raises one error with its own stable code (``verifier.errors``).
The order is the Web eID libraries' order, so that a token with several defects is refused for
the same reason they would give:

1. structure (``parse_auth_token``): a JSON object within size limits, every required field a
   non-empty string;
2. format: ``web-eid:1`` or ``web-eid:1.x``;
3. certificate: base64 of an X.509 certificate (read leniently: some cards' certificates are not
   strict DER), parsed once and kept by its SHA-256;
4. purpose: keyUsage digitalSignature; clientAuth when there is an extendedKeyUsage;
5. policies: none of the disallowed certificate policies;
6. validity: the certificate, then the trust anchor that issued it, at the validation time;
7. chain and revocation: a path to a trust anchor (pyhanko-certvalidator), with the CRL
   status, or the answer of an OCSP responder (``ocsp``), as the revocation setting says (the
   only check that waits on I/O);
8. algorithm: one of ES/PS/RS 256/384/512;
9. signature: over the Web eID signed data (``common.webeid.signed_data``) with the
   certificate's key.

The nonce is not checked here: the login flow consumes it from the challenge store first (one
use, five minutes) and passes its value in, so a replayed or foreign nonce never gets this far.
"""

from cert_agent.verifier.validation.checks import anchor_validities
from cert_agent.verifier.validation.parsing import (
    MAX_TOKEN_BYTES,
    CertificateFacts,
    ParsedAuthToken,
    ValidatedAuthToken,
    parse_auth_token,
)
from cert_agent.verifier.validation.settings import REVOCATION_MODES, ValidatorSettings, load_certificates
from cert_agent.verifier.validation.validator import AuthTokenValidator, OcspStatus

__all__ = [
    "MAX_TOKEN_BYTES",
    "REVOCATION_MODES",
    "AuthTokenValidator",
    "CertificateFacts",
    "OcspStatus",
    "ParsedAuthToken",
    "ValidatedAuthToken",
    "ValidatorSettings",
    "anchor_validities",
    "load_certificates",
    "parse_auth_token",
]
