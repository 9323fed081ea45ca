"""The agent's configuration: a TOML file, then command-line flags over it.

# ~/.config/cert-agent/config.toml (Linux; see default_config_path for the others)
port = 27138                # the first port the agent may use
port_range = 8              # ports it may use from there (27138-27145): the first it can hold
allowed_origins = ["https://etax.qingdao.example"]
modules = ["/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"]
pin_max_tries = 10          # no default: the retry limit of media no driver or catalog states one for
poll_interval = 1.0         # seconds between token scans
watch_readers = true        # PC/SC hot-plug: a card inserted or removed is an event at once
max_message_bytes = 65536   # larger WebSocket frames close the connection (1009)
pin_failures_per_connection = 5   # wrong PINs per window before RATE_LIMITED
pin_failures_per_origin = 10
pin_failures_per_token = 10       # wrong PINs per window for one medium, whatever the page
pin_failure_window = 60     # seconds
operation_timeout = 60      # seconds a token may take before TOKEN_TIMEOUT (its worker restarts)
listen_hosts = ["127.0.0.1", "::1"]   # loopback addresses to listen on
handshake_timeout = 5       # seconds a connection may take to complete an allowed handshake
max_pending_connections = 64      # connections waiting for their handshake; more close the oldest
max_connections_per_origin = 32   # open WebSockets per origin; more close the oldest
pairing_file = ""           # where pages' pairing keys are kept ("" = the user's state folder)
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cert_agent.agent.origins import OriginPolicy, normalize_origin
from cert_agent.drivers.modules import default_modules

DEFAULT_PORT = 27138  # fixed so that pages know where to look; below the ephemeral range
# On a terminal server each user's agent takes the first port of the range that it can hold on
# every listen host; pages (cert-agent.js) try the same ports in order. Keep both in step.
DEFAULT_PORT_RANGE = 8


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AgentConfig:
    port: int = DEFAULT_PORT
    port_range: int = DEFAULT_PORT_RANGE
    allowed_origins: tuple[str, ...] = ()
    modules: tuple[str, ...] = field(default_factory=lambda: tuple(default_modules()))
    pin_max_tries: int | None = None
    poll_interval: float = 1.0
    max_message_bytes: int = 64 * 1024
    pin_failures_per_connection: int = 5
    pin_failures_per_origin: int = 10
    pin_failures_per_token: int = 10
    pin_failure_window: float = 60.0
    operation_timeout: float = 60.0  # a token call slower than this is abandoned (TOKEN_TIMEOUT)
    listen_hosts: tuple[str, ...] = ("127.0.0.1", "::1")
    handshake_timeout: float = 5.0
    max_pending_connections: int = 64
    max_connections_per_origin: int = 32
    watch_readers: bool = True  # follow PC/SC readers and cards through pcscd (events at once)
    pairing_file: str = ""  # the pages' pairing keys; "" is the user's state folder (pairing.py)

    def ports(self) -> range:
        """The ports the agent may listen on, in the order pages try them."""
        return range(self.port, min(self.port + self.port_range, 65536))

    def pairing_path(self) -> Path:
        from cert_agent.agent.pairing import default_pairing_file

        return Path(self.pairing_file) if self.pairing_file else default_pairing_file()

    def origin_policy(self) -> OriginPolicy:
        return OriginPolicy.from_config(list(self.allowed_origins), self.port)

    def with_overrides(
        self, *, port: int | None = None, origins: list[str] | None = None, modules: list[str] | None = None
    ) -> AgentConfig:
        config = self
        if port is not None:  # a port named on the command line is the one port to use
            config = replace(config, port=port, port_range=1)
        if origins:
            config = replace(config, allowed_origins=tuple(normalize_origin(o) for o in origins))
        if modules:
            config = replace(config, modules=tuple(modules))
        config.origin_policy()  # validate
        return config


def default_config_path() -> Path:
    """~/.config/cert-agent/config.toml on Linux, ~/Library/Application Support/cert-agent on
    macOS, %APPDATA%\\cert-agent on Windows."""
    import platformdirs  # desktop only: imported when used, so the command can say what is missing

    return Path(platformdirs.user_config_dir("cert-agent", appauthor=False)) / "config.toml"


SYSTEM_CONFIG = Path("/etc/cert-agent/config.toml")  # what an installed package configures (Linux)


def load_config(path: Path | None = None) -> AgentConfig:
    """Read the TOML file, check every key, and refuse unsafe origins. Without a named file: the
    user's own file, else the system-wide one a package installed, else the defaults. A
    missing named file is an error."""
    explicit = path is not None
    if path is None:
        path = next((p for p in (default_config_path(), SYSTEM_CONFIG) if p.exists()), default_config_path())
    if not path.exists():
        if explicit:
            raise ConfigError(f"{path}: no such configuration file")
        return AgentConfig()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return _from_mapping(raw, str(path))


def _from_mapping(raw: dict[str, Any], where: str) -> AgentConfig:
    known = {f.name: f for f in fields(AgentConfig)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}")
        if key == "pairing_file":
            if not isinstance(value, str):
                raise ConfigError(f"{where}: pairing_file must be a string (a path)")
        elif key in ("allowed_origins", "modules", "listen_hosts"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: {key} must be a list of strings")
            if key == "listen_hosts" and not all(_is_loopback(v) for v in value):
                raise ConfigError(
                    f"{where}: listen_hosts must be loopback addresses (the agent is never on the network)"
                )
            value = tuple(value)
        elif key == "port":
            if not isinstance(value, int) or not 1 <= value <= 65535:
                raise ConfigError(f"{where}: port must be an integer from 1 to 65535")
        elif key == "port_range":
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 64:
                raise ConfigError(f"{where}: port_range must be an integer from 1 to 64")
        elif key == "watch_readers":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: watch_readers must be true or false")
        elif key == "pin_max_tries":
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}: pin_max_tries must be a positive integer")
        elif not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{where}: {key} must be a positive number")
        values[key] = value
    config = AgentConfig(**values)
    try:
        config.origin_policy()
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return config


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
