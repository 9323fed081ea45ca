"""SM2-with-SM3 signatures on certificates and CRLs, for pyhanko-certvalidator.

pyhanko-certvalidator builds paths and checks revocation itself, and asks a signature validator
for each signature it meets (``ValidationContext(signature_validator=...)``). This one checks
SM2-with-SM3 (1.2.156.10197.1.501) with the system's libcrypto at GM/T 0009's default ID
(``verifier/sm2.py``) and leaves every other algorithm to the library's own validator, so that
trust anchors may mix RSA, ECDSA and SM2 CAs. An SM2 key met with another algorithm, or the
reverse, is an invalid signature.
"""

from __future__ import annotations

from asn1crypto import algos, keys
from cryptography.exceptions import InvalidSignature
from pyhanko_certvalidator.sig_validate import (
    DEFAULT_VALIDATION_CONTEXT,
    DefaultSignatureValidator,
    SignatureValidationContext,
)

from cert_agent.verifier import sm2


class Sm2SignatureValidator(DefaultSignatureValidator):
    def validate_signature(
        self,
        signature: bytes,
        signed_data: bytes,
        public_key_info: keys.PublicKeyInfo,
        signature_algorithm: algos.SignedDigestAlgorithm,
        context: SignatureValidationContext = DEFAULT_VALIDATION_CONTEXT,
    ) -> None:
        is_sm2_signature = signature_algorithm["algorithm"].dotted == sm2.SM2_WITH_SM3
        if is_sm2_signature != sm2.is_sm2_key(public_key_info):
            raise InvalidSignature()
        if not is_sm2_signature:
            super().validate_signature(signature, signed_data, public_key_info, signature_algorithm, context)
            return
        if not sm2.verify(public_key_info.dump(), signed_data, signature):
            raise InvalidSignature()


SM2_SIGNATURE_VALIDATOR = Sm2SignatureValidator()
