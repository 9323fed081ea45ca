"""The ``cert-verifier`` command: serve, check-token, import, app (the tax apps registered for
扫码验证) and scan-confirm (the reference tax app, for the demo and tests)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cert_agent.common.errors import CertAgentError
from cert_agent.common.logtext import use_safe_text
from cert_agent.common.running import require_extra
from cert_agent.verifier.importer import ImportError_, check_records, read_sources

if TYPE_CHECKING:  # validation pulls in pyhanko and cryptography; only the commands that use it load it
    from cert_agent.verifier.ocsp import OcspSettings
    from cert_agent.verifier.store import SmsLimits
    from cert_agent.verifier.validation import AuthTokenValidator

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
DEFAULT_PORT = 8090


@dataclass
class VerifierConfig:
    """What ``cert-verifier serve`` needs; from a TOML file (paths relative to it) and flags."""

    origin: str = f"http://127.0.0.1:{DEFAULT_PORT}"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    database: Path | str = Path("verifier.db")  # an SQLite file, or a postgresql:// URL
    database_pool_size: int = 10  # PostgreSQL connections per instance
    purge_interval: float = 300.0  # seconds between purges of expired rows
    trust_anchors: list[Path] = field(default_factory=list)
    intermediates: list[Path] = field(default_factory=list)
    crls: list[Path] = field(default_factory=list)
    revocation: str = "fail-closed"
    allow_fetching: bool = False
    ocsp: bool = False  # ask an OCSP responder about taxpayer certificates (instead of CRLs)
    ocsp_url: str = ""  # the responder; empty: the one named in each certificate
    ocsp_responder_certificate: Path | None = None  # a designated responder, trusted as configured
    ocsp_timeout: float = 5.0
    ocsp_allowed_skew: float = 900.0  # seconds
    ocsp_max_age: float = 120.0  # seconds
    ocsp_nonce: bool = True
    log_format: str = "text"  # text | json (JSON lines, for a log pipeline)
    outbox: Path = Path("sms-outbox.jsonl")
    secure_cookies: bool = False
    sms_gateway_url: str = ""  # empty: the development outbox file; else the gateway's https URL
    sms_gateway_token_env: str = ""  # the environment variable that holds the gateway's bearer token
    sms_timeout: float = 5.0
    sms_retries: int = 2
    # how often a code may be sent (SmsLimits' defaults); a deployment may tighten or loosen them
    sms_resend_interval: int = 60  # seconds before a code may be sent again
    sms_per_attempt: int = 3  # codes per login attempt (10 minutes)
    sms_per_person_per_hour: int = 5
    sms_per_phone_per_day: int = 10
    # 扫码验证 beside the SMS code (answered by the apps `cert-verifier app register` registers)
    scan_verification: bool = True
    # 身份切换 after a certificate login: "enterprise" (roles in the certificate's enterprise) or
    # "linked" (also the person's other linked enterprises, as the bureau's password logins allow)
    identity_switch: str = "enterprise"
    # slow and many clients (verifier/listener.py)
    max_connections: int = 1000  # open at once (lowered to what RLIMIT_NOFILE allows)
    request_timeout: float = 10.0  # seconds for a request's headers, and keep-alive idle time
    integrity_interval: float = 30.0  # seconds between SQLite quick checks behind /api/health


_TEXT_KEYS = ("origin", "host")
_OPTIONAL_TEXT_KEYS = ("sms_gateway_url", "sms_gateway_token_env", "ocsp_url")  # "": the default (see above)
_BOOL_KEYS = ("allow_fetching", "secure_cookies", "ocsp", "ocsp_nonce", "scan_verification")
_PATH_KEYS = ("database", "outbox", "ocsp_responder_certificate")
_COUNT_KEYS = (
    "sms_resend_interval",
    "sms_per_attempt",
    "sms_per_person_per_hour",
    "sms_per_phone_per_day",
    "max_connections",
)
_SECONDS_KEYS = (
    "sms_timeout",
    "purge_interval",
    "ocsp_timeout",
    "ocsp_allowed_skew",
    "ocsp_max_age",
    "request_timeout",
    "integrity_interval",
)
_PATH_LIST_KEYS = ("trust_anchors", "intermediates", "crls")


def load_verifier_config(path: Path | None) -> VerifierConfig:
    """Read the TOML file: every key known and of its type (errors name the key), paths
    relative to the file."""
    from cert_agent.verifier.store import is_postgresql
    from cert_agent.verifier.validation import REVOCATION_MODES

    config = VerifierConfig()
    if path is None:
        return config
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    base = path.parent
    for key, value in raw.items():
        if key in _TEXT_KEYS:
            if not isinstance(value, str) or not value:
                raise ValueError(f"{path}: {key} must be a non-empty string")
        elif key in _OPTIONAL_TEXT_KEYS:
            if not isinstance(value, str):
                raise ValueError(f"{path}: {key} must be a string (empty: the default)")
        elif key == "port":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
                raise ValueError(f"{path}: port must be an integer from 1 to 65535")
        elif key == "identity_switch":
            if value not in ("enterprise", "linked"):
                raise ValueError(f"{path}: identity_switch must be enterprise or linked")
        elif key == "log_format":
            if value not in ("text", "json"):
                raise ValueError(f"{path}: log_format must be text or json")
        elif key == "revocation":
            if value not in REVOCATION_MODES:
                raise ValueError(f"{path}: revocation must be one of {', '.join(REVOCATION_MODES)}")
        elif key in _SECONDS_KEYS:
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{path}: {key} must be a positive number of seconds")
        elif key == "database_pool_size":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
                raise ValueError(f"{path}: database_pool_size must be an integer from 1 to 100")
        elif key in _COUNT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
                raise ValueError(f"{path}: {key} must be a whole number from 0")
        elif key == "sms_retries":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
                raise ValueError(f"{path}: sms_retries must be an integer from 0 to 10")
        elif key in _BOOL_KEYS:
            if not isinstance(value, bool):
                raise ValueError(f"{path}: {key} must be true or false")
        elif key in _PATH_KEYS:
            if not isinstance(value, str) or not value:
                raise ValueError(f"{path}: {key} must be a path")
            value = value if key == "database" and is_postgresql(value) else base / value
        elif key in _PATH_LIST_KEYS:
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"{path}: {key} must be a list of paths")
            value = [base / v for v in value]
        else:
            raise ValueError(f"{path}: unknown key {key!r}")
        setattr(config, key, value)
    return config


def _database(text: str) -> Path | str:
    from cert_agent.verifier.store import is_postgresql

    return text if is_postgresql(text) else Path(text)


def sms_limits(config: VerifierConfig) -> SmsLimits:
    from cert_agent.verifier.store import SmsLimit, SmsLimits

    return SmsLimits(
        interval=config.sms_resend_interval,
        per_attempt=SmsLimit(config.sms_per_attempt, 600),
        per_person=SmsLimit(config.sms_per_person_per_hour, 3600),
        per_phone=SmsLimit(config.sms_per_phone_per_day, 86400),
    )


def ocsp_settings(config: VerifierConfig) -> OcspSettings | None:
    """The OCSP settings of ``config`` (None when OCSP is off); reads the designated
    responder's certificate."""
    if not config.ocsp:
        return None
    from cryptography import x509

    from cert_agent.verifier.ocsp import OcspSettings
    from cert_agent.verifier.validation import load_certificates

    responder = None
    if config.ocsp_responder_certificate is not None:
        der = load_certificates(config.ocsp_responder_certificate.read_bytes())[0]
        responder = x509.load_der_x509_certificate(der)
    return OcspSettings(
        url=config.ocsp_url,
        responder=responder,
        timeout=config.ocsp_timeout,
        allowed_skew=config.ocsp_allowed_skew,
        max_age=config.ocsp_max_age,
        nonce=config.ocsp_nonce,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cert-verifier", description="电子税务局证书登录验证服务 (cert-verifier)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the login service and its pages")
    serve.add_argument("--config", type=Path, help="TOML configuration")
    serve.add_argument(
        "--check-config", action="store_true", help="check the configuration (keys, types, certificates, CRLs) and exit"
    )
    serve.add_argument("--origin", help="this service's origin, as browsers send it (signatures are bound to it)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--db", type=_database, help="SQLite database file, or a postgresql:// URL")
    serve.add_argument("--trust-anchor", action="append", type=Path, default=[], help="DER or PEM (repeatable)")
    serve.add_argument("--intermediate", action="append", type=Path, default=[], help="DER or PEM (repeatable)")
    serve.add_argument("--crl", action="append", type=Path, default=[], help="DER CRL file (repeatable)")
    serve.add_argument("--revocation", choices=["fail-closed", "fail-open", "off"])
    serve.add_argument("--outbox", type=Path, help="where the development SMS sender writes")

    check = sub.add_parser("check-token", help="validate one authentication token (for integrators and support)")
    check.add_argument("--token", type=Path, required=True, help="the token as a JSON file")
    check.add_argument("--origin", required=True)
    check.add_argument("--nonce", required=True)
    check.add_argument("--trust-anchor", action="append", type=Path, required=True, help="DER or PEM (repeatable)")
    check.add_argument("--intermediate", action="append", type=Path, default=[], help="DER or PEM (repeatable)")
    check.add_argument("--crl", action="append", type=Path, default=[], help="DER CRL file (repeatable)")
    check.add_argument("--at", help="validation time, ISO-8601 (default: now)")
    check.add_argument("--no-revocation", action="store_true", help="do not check revocation")

    importing = sub.add_parser("import", help="import enterprises, persons, roles and agreements")
    importing.add_argument("--db", type=_database, required=True, help="SQLite database file, or a postgresql:// URL")
    importing.add_argument("sources", type=Path, nargs="+", help="a .json file, or enterprises.csv, persons.csv ...")

    apps = sub.add_parser("app", help="the tax apps that may answer 扫码验证 (scan verification)")
    apps_sub = apps.add_subparsers(dest="app_action", required=True)
    register = apps_sub.add_parser("register", help="register an app: prints its id and secret, once")
    register.add_argument("--db", type=_database, required=True, help="SQLite database file, or a postgresql:// URL")
    register.add_argument("--name", required=True, help="the app's name, e.g. 青岛税务APP")
    listing = apps_sub.add_parser("list", help="the registered apps (never their secrets)")
    listing.add_argument("--db", type=_database, required=True)
    revoke = apps_sub.add_parser("revoke", help="end an app's right to answer, at once")
    revoke.add_argument("--db", type=_database, required=True)
    revoke.add_argument("app_id")

    scan = sub.add_parser(
        "scan-confirm", help="the reference tax app: answer a QR code as the app does after its face check"
    )
    scan.add_argument("code", help="the QR code's text (etax-scan:1;site=...;r=...)")
    scan.add_argument("--id-number", required=True, help="the identity number of the person whose face was verified")
    scan.add_argument(
        "--credential-env",
        default="CERT_VERIFIER_APP_CREDENTIAL",
        help="the environment variable holding the app's <appId>.<secret> (default %(default)s)",
    )
    scan.add_argument("--face-failed", action="store_true", help="answer that the face check did not pass")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    use_safe_text("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "check-token":
        return cmd_check_token(args)
    if args.command == "import":
        return cmd_import(args)
    if args.command == "app":
        return cmd_app(args)
    if args.command == "scan-confirm":
        return cmd_scan_confirm(args)
    return cmd_serve(args)


def cmd_check_token(args: argparse.Namespace) -> int:
    from cert_agent.verifier.validation import AuthTokenValidator, ValidatorSettings

    try:
        token = json.loads(args.token.read_text(encoding="utf-8"))
        at = dt.datetime.fromisoformat(args.at.replace("Z", "+00:00")) if args.at else None
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=dt.UTC)
        settings = ValidatorSettings.from_files(
            args.origin,
            args.trust_anchor,
            args.intermediate,
            args.crl,
            "off" if args.no_revocation else "fail-closed",
            allow_fetching=not args.no_revocation,
        )
    except (OSError, ValueError) as exc:
        print(f"cert-verifier: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = asyncio.run(AuthTokenValidator(settings).validate(token, args.nonce, at=at))  # SM2 too
    except CertAgentError as exc:
        print(f"无效 (invalid): {exc.message}")
        print(exc.code)
        return EXIT_INVALID
    print(f"有效 (valid): {result.subject}")
    print(f"算法 (algorithm): {result.algorithm}")
    if result.taxpayer_id:
        print(f"纳税人识别号: {result.taxpayer_id.value}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from cert_agent.verifier.errors import StoreUnavailable
    from cert_agent.verifier.store import open_store

    try:
        records = check_records(read_sources(args.sources))
    except ImportError_ as exc:
        print(f"导入失败 (nothing imported): {exc}", file=sys.stderr)
        return EXIT_INVALID

    async def import_into_store() -> None:
        store = await open_store(args.db)
        try:
            await store.import_all(records)
        finally:
            await store.close()

    try:
        asyncio.run(import_into_store())
    except StoreUnavailable as exc:
        print(f"导入失败 (nothing imported): {exc.describe()}", file=sys.stderr)
        return EXIT_INVALID
    counts = ", ".join(f"{len(v)} {k}" for k, v in records.items())
    print(f"已导入 (imported): {counts}")
    return EXIT_OK


def cmd_app(args: argparse.Namespace) -> int:
    from cert_agent.verifier import apps
    from cert_agent.verifier.errors import StoreUnavailable
    from cert_agent.verifier.store import open_store

    async def run_action() -> int:
        store = await open_store(args.db)
        try:
            if args.app_action == "register":
                registered = await apps.register(store, args.name, dt.datetime.now(dt.UTC))
                print(f"已登记 (registered): {args.name}")
                print(f"app id: {registered.app_id}")
                print(f"credential (shown once; sent as Authorization: Bearer ...): {registered.credential}")
            elif args.app_action == "list":
                for app in await store.apps():
                    print(f"{app.app_id}\t{app.name}\t{'已停用 revoked' if app.revoked else '有效 active'}")
            elif not await store.revoke_app(args.app_id):
                print(f"没有该应用 (no such app): {args.app_id}", file=sys.stderr)
                return EXIT_INVALID
            else:
                print(f"已停用 (revoked): {args.app_id}")
        finally:
            await store.close()
        return EXIT_OK

    try:
        return asyncio.run(run_action())
    except StoreUnavailable as exc:
        print(f"数据库不可用 (database unavailable): {exc.describe()}", file=sys.stderr)
        return EXIT_INVALID


def cmd_scan_confirm(args: argparse.Namespace) -> int:
    from cert_agent.verifier.appclient import AppClientError, confirm_scan

    credential = os.environ.get(args.credential_env, "")
    if not credential:
        print(f"缺少应用凭据 (no app credential): set {args.credential_env}", file=sys.stderr)
        return EXIT_USAGE
    try:
        answer = asyncio.run(confirm_scan(args.code, credential, args.id_number, face_verified=not args.face_failed))
    except ValueError as exc:
        print(f"二维码无法识别 (not a scan code): {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AppClientError as exc:
        print(f"{exc.message} ({exc.code})", file=sys.stderr)
        return EXIT_INVALID
    print(f"已确认 (confirmed): {answer['enterprise']} {answer['person']}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        config = load_verifier_config(args.config)
        for name in ("origin", "host", "port", "revocation", "outbox"):
            if getattr(args, name) is not None:
                setattr(config, name, getattr(args, name))
        if args.db is not None:
            config.database = args.db
        config.trust_anchors += args.trust_anchor
        config.intermediates += args.intermediate
        config.crls += args.crl
        if not config.trust_anchors:
            raise ValueError("at least one trust anchor is required (--trust-anchor or trust_anchors)")
        from cert_agent.verifier.validation import ValidatorSettings

        settings = ValidatorSettings.from_files(
            config.origin,
            config.trust_anchors,
            config.intermediates,
            config.crls,
            config.revocation,
            config.allow_fetching,
            ocsp_settings(config),
        )
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"配置错误 (configuration error): {exc}", file=sys.stderr)
        return EXIT_USAGE
    from cert_agent.verifier.errors import Sm2Unavailable
    from cert_agent.verifier.validation import AuthTokenValidator

    try:
        validator = AuthTokenValidator(settings)
    except Sm2Unavailable as exc:
        print(f"配置错误 (configuration error): {exc.message}\n{exc.describe()}", file=sys.stderr)
        print(exc.code, file=sys.stderr)
        return EXIT_USAGE
    if args.check_config:
        print(
            f"配置有效 (configuration is valid): origin {config.origin}, {len(settings.trust_anchors)} trust anchor(s)"
        )
        return EXIT_OK
    from cert_agent.verifier.logs import configure

    configure(config.log_format)
    return _serve(config, validator)


def _serve(config: VerifierConfig, validator: AuthTokenValidator) -> int:
    from aiohttp import web

    from cert_agent.common.logfilters import quiet_bad_requests
    from cert_agent.common.running import until_stopped
    from cert_agent.verifier.app import create_app
    from cert_agent.verifier.errors import StoreUnavailable
    from cert_agent.verifier.factors import SecondFactor
    from cert_agent.verifier.factors.scan import ScanFactor
    from cert_agent.verifier.factors.sms import SmsFactor
    from cert_agent.verifier.factors.sms_senders import HttpGatewaySender, OutboxSender, SmsSender
    from cert_agent.verifier.listener import HttpGuard
    from cert_agent.verifier.login import LoginService
    from cert_agent.verifier.store import open_store

    quiet_bad_requests()

    def announce(record: dict[str, str]) -> None:
        print(f"短信 (SMS) -> {record['phone']}: 验证码 {record['code']}", flush=True)

    sender: SmsSender = (
        HttpGatewaySender(
            config.sms_gateway_url,
            token_env=config.sms_gateway_token_env or None,
            timeout=config.sms_timeout,
            retries=config.sms_retries,
        )
        if config.sms_gateway_url
        else OutboxSender(config.outbox, announce)
    )

    async def serve() -> None:
        guard = HttpGuard(max_connections=config.max_connections, request_timeout=config.request_timeout)
        store = await open_store(
            config.database, pool_size=config.database_pool_size, integrity_interval=config.integrity_interval
        )
        factors: list[SecondFactor] = [SmsFactor(store, sender, sms_limits(config))]
        if config.scan_verification:
            factors.append(ScanFactor(store, config.origin))
        login = LoginService(store, validator, tuple(factors), switch_scope=config.identity_switch)
        app = create_app(login, secure_cookies=config.secure_cookies, purge_interval=config.purge_interval, guard=guard)
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=config.request_timeout)
        await runner.setup()  # the cleanup it registers closes the store
        try:
            guard.listen(config.host, config.port)
            if runner.server is None:
                raise RuntimeError("the aiohttp runner has no server after setup")
            guard.serve(runner.server)
            listening = f"cert-verifier listening on http://{config.host}:{config.port}/ (origin {config.origin})"
            logging.getLogger("cert_agent.verifier").info("at most %d connections at once", guard.max_connections)
            await until_stopped(lambda: print(listening, flush=True))
        finally:
            await guard.close()
            await runner.cleanup()

    try:
        asyncio.run(serve())
    except StoreUnavailable as exc:
        print(f"数据库不可用 (database unavailable): {exc.describe()}", file=sys.stderr)
        return EXIT_INVALID
    except OSError as exc:
        print(f"无法监听 (cannot listen on) {config.host}:{config.port}: {exc.strerror}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def run() -> None:
    require_extra("verifier", "pyhanko_certvalidator", "asn1crypto")
    sys.exit(main())


if __name__ == "__main__":
    run()
