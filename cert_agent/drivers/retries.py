"""How many tries a medium's PIN has left: the one rule, fed by the medium, the media catalog and
the configuration.

- The **retry limit** (wrong PINs in a row that lock the medium) is the medium's own word where its
  library reports it (SKF's GetPINInfo), else the media catalog's for its library and model, else
  the configured ``pin_max_tries``; None when nobody knows.
- The **tries left** are the lower of what the medium reports (PKCS#11: 1 at its final try; SKF:
  its counter) and the limit less the wrong PINs in a row the daemon has seen; None when neither
  is known. The daemon's count never says 0: only the medium says a PIN is locked.
"""

from __future__ import annotations

from cert_agent.drivers.catalog import default_catalog
from cert_agent.drivers.models import Token


def retry_limit(token: Token, configured: int | None) -> int | None:
    if token.pin.max_tries is not None:
        return token.pin.max_tries
    entry = default_catalog().for_token(token.module, token.manufacturer, token.model)
    if entry is not None and entry.pin_max_tries is not None:
        return entry.pin_max_tries
    return configured


def tries_left(reported: int | None, limit: int | None, wrong_in_a_row: int) -> int | None:
    known = [] if reported is None else [reported]
    if limit is not None and limit - wrong_in_a_row >= 1:
        known.append(limit - wrong_in_a_row)
    return min(known) if known else None
