"""Signs in a loop until the token goes away, then lists what is left. Run by test_removal.

Prints one JSON line per attempt ({"ok": true} or {"code": ...}) and a final
{"remaining": N} line. Runs in its own process so that the test can pull the token out
(delete it from SoftHSM's store) while a signature is under way.
"""

from __future__ import annotations

import json
import sys

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.pin import Pin
from cert_agent.drivers.pkcs11 import Pkcs11Driver


def main(module: str, label: str, cert_id: str, pin: str) -> None:
    driver = Pkcs11Driver([module])
    token = driver.find_token(label=label)
    failures = 0
    for _ in range(20000):
        try:
            driver.sign(token, bytes.fromhex(cert_id), Pin(pin), b"data", SignatureAlgorithm.ES256)
            print(json.dumps({"ok": True}), flush=True)
        except CertAgentError as exc:
            failures += 1
            print(json.dumps({"code": exc.code, "detail": exc.describe()}), flush=True)
            if failures >= 5:
                break
    print(json.dumps({"remaining": len(driver.tokens())}), flush=True)
    driver.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
