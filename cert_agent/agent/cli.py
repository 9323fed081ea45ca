"""The ``cert-agent`` command: tokens, certs, change-pin, verify-pin, doctor, autostart,
browser-policy, serve.

Output is a readable table for people and ``--json`` for machines. A PIN is never accepted on
the command line: ``change-pin`` prompts for it, or reads it from standard input with
``--pin-stdin`` (old PIN on the first line, new PIN on the second).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from cert_agent import __version__
from cert_agent.agent.config import DEFAULT_PORT, default_config_path, load_config
from cert_agent.agent.exitcodes import (
    EXIT_ALREADY_RUNNING,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PORT_TAKEN,
    EXIT_UNSAFE_DIR,
    EXIT_USAGE,
)
from cert_agent.agent.tables import print_json, print_table
from cert_agent.common.errors import CertAgentError
from cert_agent.common.logtext import use_safe_text
from cert_agent.common.running import require_extra
from cert_agent.desktop import commands as desktop_commands
from cert_agent.drivers.modules import default_modules
from cert_agent.drivers.pin import Pin

if TYPE_CHECKING:  # the drivers (python-pkcs11, cryptography) load only for the commands that use them
    from cert_agent.drivers.interface import TokenDriver


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cert-agent",
        description="证书助手：通过税务UKey、金税盘、税控盘中的证书登录电子税务局 (cert-agent)",
    )
    parser.add_argument("--version", action="version", version=f"cert-agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the agent does (never PINs)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--module",
        action="append",
        metavar="PATH",
        help="PKCS#11 module to load (repeatable); default: $CERT_AGENT_MODULES or the known modules on disk",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    tokens = sub.add_parser("tokens", parents=[common], help="list tokens (证书介质)")
    tokens.add_argument("--json", action="store_true", help="machine-readable output")
    tokens.add_argument("--config", type=Path, help="the agent's TOML configuration (to ask the running agent)")

    certs = sub.add_parser("certs", parents=[common], help="list certificates on the tokens")
    certs.add_argument("--json", action="store_true", help="machine-readable output")
    certs.add_argument("--label", "--token", dest="label", metavar="LABEL", help="only the token with this label")

    change = sub.add_parser("change-pin", parents=[common], help="change the certificate PIN (修改证书密码)")
    change.add_argument("--label", "--token", dest="label", metavar="LABEL", required=True, help="label of the token")
    change.add_argument(
        "--pin-stdin",
        action="store_true",
        help="read the old PIN, then the new PIN, as two lines of standard input",
    )

    verify = sub.add_parser(
        "verify-pin",
        parents=[common],
        help="verify the certificate PIN once yourself (验证证书密码), e.g. to spend a medium's last try",
    )
    verify.add_argument("--label", "--token", dest="label", metavar="LABEL", required=True, help="label of the token")
    verify.add_argument("--pin-stdin", action="store_true", help="read the PIN as one line of standard input")

    doctor = sub.add_parser("doctor", parents=[common], help="check modules, tokens, pcscd, the agent, autostart")
    doctor.add_argument("--config", type=Path, help="the agent's TOML configuration (its origins)")

    autostart = sub.add_parser("autostart", help="start the agent at login, or not (this user)")
    autostart.add_argument("action", choices=["enable", "disable", "status"])

    policy = sub.add_parser(
        "browser-policy", help="let the configured origins reach the agent without a browser prompt (root)"
    )
    policy.add_argument("action", choices=["install", "remove", "status"])
    policy.add_argument("--config", type=Path, help="the agent's TOML configuration (its origins)")
    policy.add_argument("--allow-origin", action="append", metavar="ORIGIN", help="instead of the configured origins")
    policy.add_argument("--root", type=Path, default=Path("/"), help="install under this root (packaging, tests)")

    serve = sub.add_parser("serve", parents=[common], help="run the agent daemon (WebSocket on 127.0.0.1)")
    serve.add_argument("--config", type=Path, help=f"TOML configuration (default: {default_config_path()})")
    serve.add_argument("--port", type=int, help=f"port on 127.0.0.1 and ::1 (default {DEFAULT_PORT})")
    serve.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="origin allowed to use the agent, exactly (repeatable; replaces the configured list)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    use_safe_text("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers = {
        "tokens": cmd_tokens,
        "certs": cmd_certs,
        "change-pin": cmd_change_pin,
        "verify-pin": cmd_verify_pin,
        "doctor": cmd_doctor,
        "autostart": desktop_commands.cmd_autostart,
        "browser-policy": desktop_commands.cmd_browser_policy,
        "serve": cmd_serve,
    }
    try:
        return handlers[args.command](args, sys.stdout)
    except CertAgentError as exc:
        print(f"错误：{exc.message}", file=sys.stderr)
        print(exc.code, file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR


def _driver(args: argparse.Namespace, modules: list[str] | None = None) -> TokenDriver:
    from cert_agent.drivers.factory import open_driver

    return open_driver(modules or args.module or default_modules())


def cmd_tokens(args: argparse.Namespace, out: TextIO) -> int:
    driver = _driver(args)
    try:
        tokens = driver.tokens()
        # The running agent may know more than the flags: a module that said CKR_PIN_LOCKED
        # without setting CKF_USER_PIN_LOCKED (tpm2-pkcs11). Its word wins.
        known = running_agent_pin_states()
        listed = [t.to_dict() | ({"pinState": known[t.token_id]} if t.token_id in known else {}) for t in tokens]
        if args.json:
            print_json(out, {"tokens": listed, "problems": _problems(driver)})
        else:
            rows = [
                [t["label"], t["medium"], t["serial"], t["manufacturer"], t["model"], t["pinState"]] for t in listed
            ]
            print_table(out, ["标签 label", "介质 medium", "序列号 serial", "厂商", "型号", "PIN"], rows)
            _print_problems(driver)
    finally:
        driver.close()
    return EXIT_OK if not driver.problems else EXIT_ERROR


def cmd_certs(args: argparse.Namespace, out: TextIO) -> int:
    driver = _driver(args)
    try:
        certs = driver.certificates(driver.find_token(label=args.label)) if args.label else driver.all_certificates()
        if args.json:
            print_json(out, {"certificates": [c.to_dict() for c in certs], "problems": _problems(driver)})
        else:
            rows = []
            for cert in certs:
                info = cert.info
                if info is None:
                    error = cert.error.message if cert.error else ""
                    rows.append([cert.token.label, cert.cert_id[:8], f"（{error}）", "", "", ""])
                    continue
                tid = info.taxpayer_id
                name = info.subject_cn or info.subject
                rows.append(
                    [
                        cert.token.label,
                        cert.cert_id[:8],
                        name if cert.has_private_key else f"{name}（无私钥）",
                        (tid.value + ("" if tid.is_valid else " ✗")) if tid else "",
                        f"{info.key_type}-{info.key_size}",
                        info.not_after.date().isoformat(),
                    ]
                )
            print_table(out, ["介质", "证书ID", "名称", "纳税人识别号", "密钥", "有效期至"], rows)
            _print_problems(driver)
    finally:
        driver.close()
    return EXIT_OK


def cmd_change_pin(args: argparse.Namespace, out: TextIO) -> int:
    from cert_agent.agent.instance import InstanceLock

    # The running agent may be writing to the same medium: one writer at a time (the lock is
    # taken before any PIN is read, so a refusal costs the user no typing).
    with InstanceLock("change-pin"):
        driver = _driver(args)
        try:
            token = driver.find_token(label=args.label)
            if token.pin_pad:  # the reader's keypad asks for both PINs; none is typed here
                print("请在读卡器的密码键盘上输入原证书密码，再输入新证书密码 (use the reader's PIN pad)", file=out)
                driver.change_pin(token, None, None)
            else:
                old_text, new_text = _read_pins(args.pin_stdin)
                with Pin(old_text) as old, Pin(new_text) as new:
                    del old_text, new_text
                    driver.change_pin(token, old, new)
        finally:
            driver.close()
    print(f"证书密码已修改（{args.label}）", file=out)
    return EXIT_OK


def cmd_verify_pin(args: argparse.Namespace, out: TextIO) -> int:
    """Verify the PIN as the user's own action: through the running agent when one serves (so
    its counts of wrong PINs learn the outcome, and a medium's last try may be spent), else on
    the medium directly."""
    from cert_agent.agent.instance import InstanceLock, serving_port

    port = serving_port()
    text = sys.stdin.readline().rstrip("\r\n") if args.pin_stdin else getpass.getpass("证书密码 (PIN): ")
    with Pin(text) as pin:
        del text
        if port is not None:
            error = _verify_through_agent(port, args.label, pin)
            if error is not None:  # the agent's own words for it (with triesLeft in the message)
                print(f"错误：{error.get('message', '')}", file=sys.stderr)
                print(error.get("code", "INTERNAL_ERROR"), file=sys.stderr)
                return EXIT_ERROR
        else:
            with InstanceLock("verify-pin"):
                driver = _driver(args)
                try:
                    driver.verify_pin(driver.find_token(label=args.label), pin)
                finally:
                    driver.close()
    print(f"证书密码正确（{args.label}） (the PIN is right)", file=out)
    return EXIT_OK


def _verify_through_agent(port: int, label: str, pin: Pin) -> dict[str, Any] | None:
    """verifyPin over this user's own control connection (``control.py``): None when the PIN
    is right, else the agent's error object."""
    import asyncio

    from cert_agent.agent.client import control_client
    from cert_agent.drivers.errors import TokenAmbiguous, TokenNotFound

    async def ask() -> dict[str, Any]:
        async with control_client(port, timeout=120) as agent:
            tokens = (await agent.call("listCertificates")).get("result", {}).get("tokens", [])
            ids = [t["tokenId"] for t in tokens if t.get("label") == label]
            if len(ids) != 1:
                raise (TokenNotFound(label) if not ids else TokenAmbiguous(label))
            return await agent.call("verifyPin", tokenId=ids[0], pin=pin.reveal().decode("utf-8"))

    error: dict[str, Any] | None = asyncio.run(ask()).get("error")
    return error


def _read_pins(from_stdin: bool) -> tuple[str, str]:
    if from_stdin:
        old = sys.stdin.readline().rstrip("\r\n")
        new = sys.stdin.readline().rstrip("\r\n")
        return old, new
    old = getpass.getpass("原证书密码 (old PIN): ")
    new = getpass.getpass("新证书密码 (new PIN, 6-16): ")
    again = getpass.getpass("再次输入新证书密码 (repeat): ")
    if new != again:
        print("两次输入的新证书密码不一致", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    return old, new


def cmd_doctor(args: argparse.Namespace, out: TextIO) -> int:
    from cert_agent.agent.doctor import run_doctor

    modules = args.module or default_modules()
    driver = _driver(args, modules)
    try:
        healthy = run_doctor(driver, modules, args.config, out)
    finally:
        driver.close()
    return EXIT_OK if healthy else EXIT_ERROR


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    import asyncio

    from cert_agent.agent.server import serve_forever

    try:
        config = load_config(args.config).with_overrides(port=args.port, origins=args.allow_origin, modules=args.module)
    except ValueError as exc:  # ConfigError and OriginConfigError
        print(f"配置错误 (configuration error): {exc}", file=sys.stderr)
        return EXIT_USAGE
    # the agent's own record at INFO; -v adds each request (DEBUG), never a PIN either way
    logging.getLogger("cert_agent").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from cert_agent.common.logthread import write_in_background

    write_in_background()  # a stalled stderr must not stop the event loop
    from cert_agent.agent.errors import AgentAlreadyRunning, ListenFailed, PrivateDirUnsafe
    from cert_agent.agent.instance import InstanceLock

    try:
        with InstanceLock("serve") as lock:
            asyncio.run(serve_forever(config, on_listening=lock.set_port))
    except ListenFailed as exc:
        ports = exc.fields.get("ports") or [config.port]
        print(f"证书助手无法占用本机端口 {_port_span(ports)} 的全部回环地址，未启动：", file=sys.stderr)
        for line in _holder_lines(exc.fields.get("holders") or []):
            print(f"  {line}", file=sys.stderr)
        print(
            f"cannot hold {', '.join(config.listen_hosts)} on port {_port_span(ports)}: {exc.detail}", file=sys.stderr
        )
        print(exc.code, file=sys.stderr)
        return EXIT_PORT_TAKEN
    except PrivateDirUnsafe as exc:
        print(f"{exc.zh}\n{exc.describe()}", file=sys.stderr)
        print(exc.code, file=sys.stderr)
        return EXIT_UNSAFE_DIR
    except AgentAlreadyRunning as exc:
        where = f"端口 {exc.fields['port']}" if exc.fields.get("port") else "正在修改证书密码"
        print(f"证书助手已在运行（进程 {exc.fields.get('pid')}，{where}），无需再次启动", file=sys.stderr)
        print(exc.code, file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    return EXIT_OK


def _port_span(ports: list[int]) -> str:
    return str(ports[0]) if len(ports) == 1 else f"{ports[0]}-{ports[-1]}"


def _holder_lines(holders: list[dict[str, Any]]) -> list[str]:
    """Who holds the ports, one line each (``ListenFailed`` carries ``PortHolder.to_dict``)."""
    from cert_agent.agent.peers import PortHolder

    lines = [f"{PortHolder(**h)} (held by {h['user']})" for h in holders]
    return lines or ["（无法查明占用者 / the holder could not be told）"]


def running_agent_pin_states() -> dict[str, str]:
    """The PIN state of each token as this user's running agent shows it (empty when none runs,
    or it does not answer within 5 s). Asked over the user's own control connection
    (``control.py``): a local program of the same user, not a page, so no origin is needed."""
    import asyncio

    import aiohttp

    from cert_agent.agent.client import control_client
    from cert_agent.agent.errors import WorkerFailed
    from cert_agent.agent.instance import serving_port

    port = serving_port()
    if port is None:
        return {}

    async def ask() -> dict[str, str]:
        async with control_client(port, timeout=5) as agent:
            reply = await agent.call("listCertificates")
            return {t["tokenId"]: t["pinState"] for t in reply.get("result", {}).get("tokens", [])}

    try:
        return asyncio.run(ask())
    except (WorkerFailed, aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError, TypeError):
        return {}


def _problems(driver: TokenDriver) -> list[dict[str, Any]]:
    return [p.to_dict() for p in driver.problems]


def _print_problems(driver: TokenDriver) -> None:
    for problem in driver.problems:
        print(f"✗ {problem.error.message}: {problem.error.detail} [{problem.error.code}]", file=sys.stderr)


def run() -> None:
    require_extra("desktop", "pkcs11", "smartcard", "platformdirs")
    sys.exit(main())


if __name__ == "__main__":
    run()
