"""What every driver offers the agent, whatever interface its library speaks (PKCS#11, SKF).

A driver loads one or more vendor libraries of one interface and shows their media as
:class:`~cert_agent.drivers.models.Token` values. Every driver keeps these rules (the agent's
worker, lanes, PIN turns, rate limits and events rely on them, and are the same for every kind):

- it is safe from several threads, and one token's slow call holds up only the callers of that
  token;
- every call re-reads the medium first (is it the same one, still present, its PIN not locked?)
  and leaves no login state behind;
- every library failure becomes a :class:`~cert_agent.common.errors.CertAgentError` with a stable
  code; a library that fails to load, or returns garbage, costs only its own media (recorded in
  ``problems``);
- a PIN goes from its own buffer to the library and nowhere else, and a wrong one raises
  ``PinIncorrect`` with the tries left where the medium reports them (``PinStatus``), else None:
  counting wrong PINs is the daemon's job (``agent/tokens/pins.py``), not the driver's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.drivers.errors import TokenAmbiguous, TokenNotFound
from cert_agent.drivers.models import LibraryProblem, PinStatus, Token, TokenCertificate
from cert_agent.drivers.pin import Pin


class TokenDriver(ABC):
    problems: list[LibraryProblem]

    @property
    @abstractmethod
    def modules(self) -> list[str]:
        """The libraries that loaded."""

    @abstractmethod
    def tokens(self) -> list[Token]:
        """Every medium present now; a library that fails to list is skipped (and logged)."""

    @abstractmethod
    def certificates(self, token: Token) -> list[TokenCertificate]:
        """The certificates on ``token``, each parsed; an unparsable one carries its error."""

    @abstractmethod
    def prepare(self, token: Token) -> None:
        """Read once what signing will need (mechanisms, keys), so that the first PIN a user
        types costs what every later one does."""

    @abstractmethod
    def verify_pin(self, token: Token, pin: Pin | None) -> None:
        """Check the user PIN (None: the reader's PIN pad collects it)."""

    @abstractmethod
    def change_pin(self, token: Token, old: Pin | None, new: Pin | None) -> None:
        """Change the user PIN after the new-PIN policy check (both None: on the PIN pad)."""

    @abstractmethod
    def pin_status(self, token: Token) -> PinStatus:
        """The PIN's status as the medium reports it now."""

    @abstractmethod
    def sign(self, token: Token, cert_id: bytes, pin: Pin | None, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        """Sign ``data`` with the key of certificate ``cert_id``, logged in with ``pin``."""

    @abstractmethod
    def rescan(self) -> None:
        """Make media inserted since the libraries loaded visible to the next ``tokens()``."""

    @abstractmethod
    def close(self) -> None:
        """Unload the libraries."""

    def find_token(self, *, label: str | None = None, serial: str | None = None, token_id: str | None = None) -> Token:
        matches = [
            t
            for t in self.tokens()
            if (label is None or t.label == label)
            and (serial is None or t.serial == serial)
            and (token_id is None or t.token_id == token_id)
        ]
        if not matches:
            raise TokenNotFound(label or serial or token_id or "")
        if len(matches) > 1:
            raise TokenAmbiguous(label or serial or token_id or "")
        return matches[0]

    def all_certificates(self) -> list[TokenCertificate]:
        from cert_agent.common.errors import CertAgentError

        result: list[TokenCertificate] = []
        for token in self.tokens():
            try:
                result.extend(self.certificates(token))
            except CertAgentError:
                continue  # the driver logged it; the other media are listed
        return result
