"""The ``cert-agent`` command: tokens, certs, change-pin, doctor.

Output is a readable table for people and ``--json`` for machines. A PIN is never accepted on
the command line: ``change-pin`` prompts for it, or reads it from standard input with
``--pin-stdin`` (old PIN on the first line, new PIN on the second).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from cert_agent import __version__
from cert_agent.agent.config import DEFAULT_PORT, AgentConfig, default_config_path, load_config
from cert_agent.common.errors import CertAgentError
from cert_agent.common.logtext import use_safe_text
from cert_agent.common.running import require_extra
from cert_agent.drivers.modules import default_modules
from cert_agent.drivers.pin import Pin

if TYPE_CHECKING:  # the drivers (python-pkcs11, cryptography) load only for the commands that use them
    from cert_agent.drivers.interface import TokenDriver

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_ALREADY_RUNNING = 3  # `serve` while this user's agent (or a change-pin) is running
EXIT_PORT_TAKEN = 4  # `serve` could not hold every loopback address on any of its ports
EXIT_UNSAFE_DIR = 5  # the lock's or pairing keys' folder is a link or another user's


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
    certs.add_argument("--token", metavar="LABEL", help="only the token with this label")

    change = sub.add_parser("change-pin", parents=[common], help="change the certificate PIN (修改证书密码)")
    change.add_argument("--token", metavar="LABEL", required=True, help="label of the token")
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
    verify.add_argument("--token", metavar="LABEL", required=True, help="label of the token")
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
        "autostart": cmd_autostart,
        "browser-policy": cmd_browser_policy,
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
        known = running_agent_pin_states(args.config)
        listed = [t.to_dict() | ({"pinState": known[t.token_id]} if t.token_id in known else {}) for t in tokens]
        if args.json:
            _print_json(out, {"tokens": listed, "problems": _problems(driver)})
        else:
            rows = [
                [t["label"], t["medium"], t["serial"], t["manufacturer"], t["model"], t["pinState"]] for t in listed
            ]
            _print_table(out, ["标签 label", "介质 medium", "序列号 serial", "厂商", "型号", "PIN"], rows)
            _print_problems(driver)
    finally:
        driver.close()
    return EXIT_OK if not driver.problems else EXIT_ERROR


def cmd_certs(args: argparse.Namespace, out: TextIO) -> int:
    driver = _driver(args)
    try:
        certs = driver.certificates(driver.find_token(label=args.token)) if args.token else driver.all_certificates()
        if args.json:
            _print_json(out, {"certificates": [c.to_dict() for c in certs], "problems": _problems(driver)})
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
            _print_table(out, ["介质", "证书ID", "名称", "纳税人识别号", "密钥", "有效期至"], rows)
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
            token = driver.find_token(label=args.token)
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
    print(f"证书密码已修改（{args.token}）", file=out)
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
            error = _verify_through_agent(port, args.token, pin)
            if error is not None:  # the agent's own words for it (with triesLeft in the message)
                print(f"错误：{error.get('message', '')}", file=sys.stderr)
                print(error.get("code", "INTERNAL_ERROR"), file=sys.stderr)
                return EXIT_ERROR
        else:
            with InstanceLock("verify-pin"):
                driver = _driver(args)
                try:
                    driver.verify_pin(driver.find_token(label=args.token), pin)
                finally:
                    driver.close()
    print(f"证书密码正确（{args.token}） (the PIN is right)", file=out)
    return EXIT_OK


def _verify_through_agent(port: int, label: str, pin: Pin) -> dict[str, Any] | None:
    """verifyPin over this user's own control connection (``control.py``): None when the PIN
    is right, else the agent's error object."""
    import asyncio

    from cert_agent.agent import control
    from cert_agent.drivers.errors import TokenAmbiguous, TokenNotFound

    async def ask() -> dict[str, Any]:
        async with control.connect(port, timeout=120) as ws:
            tokens = (await control.call(ws, 1, "listCertificates", {}, 120)).get("result", {}).get("tokens", [])
            ids = [t["tokenId"] for t in tokens if t.get("label") == label]
            if len(ids) != 1:
                raise (TokenNotFound(label) if not ids else TokenAmbiguous(label))
            params = {"tokenId": ids[0], "pin": pin.reveal().decode("utf-8")}
            return await control.call(ws, 2, "verifyPin", params, 120)

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
    healthy = True
    modules = args.module or default_modules()
    if not modules:
        print("✗ 未找到 PKCS#11 模块 (no PKCS#11 module found; use --module)", file=out)
        healthy = False
    driver = _driver(args, modules)
    token_readers: list[str] = []
    try:
        failed = {p.module: p for p in driver.problems}
        for module in modules:
            if module in failed:
                print(f"✗ 模块 {module}: {failed[module].error.detail}", file=out)
                healthy = False
                continue
            tokens = [t for t in driver.tokens() if t.module == module]
            token_readers += [t.reader for t in tokens if t.reader]
            print(f"✓ 模块 {module}: {len(tokens)} 个证书介质", file=out)
            for token in tokens:
                print(
                    f"    {token.label} ({token.medium.value}, {token.serial}, PIN {token.pin_state.value})", file=out
                )
    finally:
        driver.close()
    pcsc_ok, pcsc_text = pcscd_status()
    print(("✓ " if pcsc_ok else "✗ ") + pcsc_text, file=out)
    if pcsc_ok and not _report_cards(token_readers, out):
        healthy = False
    print(agent_status(), file=out)
    try:
        for line in port_report(load_config(args.config)):
            print(line, file=out)
    except ValueError:
        pass  # the configuration error is reported below
    from cert_agent.desktop import autostart, browser_policy

    state = autostart.status(Path.home())
    print(
        ("✓ 开机自动启动：已开启 " if state.enabled else "• 开机自动启动：未开启 ") + f"(autostart: {state.where})",
        file=out,
    )
    try:
        origins = load_config(args.config).allowed_origins
    except ValueError as exc:
        print(f"✗ 配置错误 (configuration error): {exc}", file=out)
        return EXIT_ERROR
    for browser, allowed in browser_policy.status(origins).items():
        mark = "✓" if allowed else "•"
        print(
            f"{mark} {browser} 浏览器策略 (managed policy) {'允许' if allowed else '未允许'} {', '.join(origins)}",
            file=out,
        )
    return EXIT_OK if healthy else EXIT_ERROR


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    import asyncio

    from cert_agent.agent.server import serve_forever

    try:
        config = load_config(args.config).with_overrides(port=args.port, origins=args.allow_origin, modules=args.module)
    except ValueError as exc:  # ConfigError and OriginConfigError
        print(f"配置错误 (configuration error): {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.verbose:
        logging.getLogger("cert_agent").setLevel(logging.INFO)
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


def cmd_autostart(args: argparse.Namespace, out: TextIO) -> int:
    from cert_agent.desktop import autostart

    home = Path.home()
    if args.action == "enable":
        state = autostart.enable(home, autostart.agent_command())
    elif args.action == "disable":
        state = autostart.disable(home)
    else:
        state = autostart.status(home)
    print(
        f"开机自动启动 (autostart): {'已开启 enabled' if state.enabled else '未开启 disabled'} ({state.where})",
        file=out,
    )
    return EXIT_OK


def cmd_browser_policy(args: argparse.Namespace, out: TextIO) -> int:
    from cert_agent.desktop import browser_policy

    try:
        origins = args.allow_origin or list(load_config(args.config).allowed_origins)
        browser_policy.policy(origins)  # validates: exact origins only
    except ValueError as exc:
        print(f"配置错误 (configuration error): {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not origins and args.action != "remove":
        print("没有配置允许的网站 (no allowed origins configured)", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.action == "install":
            for path in browser_policy.install(origins, args.root):
                print(f"已写入 (written): {path}", file=out)
        elif args.action == "remove":
            for path in browser_policy.remove(args.root):
                print(f"已删除 (removed): {path}", file=out)
    except PermissionError as exc:
        print(f"需要管理员权限 (run as root): {exc}", file=sys.stderr)
        return EXIT_ERROR
    for browser, allowed in browser_policy.status(origins, args.root).items():
        print(f"{browser}: {'允许 allowed' if allowed else '未允许 not allowed'} {', '.join(origins)}", file=out)
    return EXIT_OK


def running_agent_pin_states(config_path: Path | None) -> dict[str, str]:
    """The PIN state of each token as this user's running agent shows it (empty when none runs,
    or it does not answer within 5 s). Asked over the user's own control connection
    (``control.py``): a local program of the same user, not a page, so no origin is needed.
    (``config_path`` is kept for the command line's sake; the running agent says its port.)"""
    import asyncio

    import aiohttp

    from cert_agent.agent import control
    from cert_agent.agent.errors import WorkerFailed
    from cert_agent.agent.instance import serving_port

    port = serving_port()
    if port is None:
        return {}

    async def ask() -> dict[str, str]:
        async with control.connect(port, timeout=5) as ws:
            reply = await control.call(ws, 1, "listCertificates", {}, 5)
            return {t["tokenId"]: t["pinState"] for t in reply.get("result", {}).get("tokens", [])}

    try:
        return asyncio.run(ask())
    except (WorkerFailed, aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError, TypeError):
        return {}


def agent_status() -> str:
    """Whether this user's agent is running, and on which port (for doctor)."""
    from cert_agent.agent.instance import holder

    running = holder()
    if running is None:
        return "✗ 证书助手未运行 (cert-agent serve is not running)"
    if running.get("command") != "serve":
        return f"• 证书助手正在修改证书密码 (change-pin running, pid {running.get('pid')})"
    return f"✓ 证书助手运行中，端口 {running.get('port')} (cert-agent serve running, pid {running.get('pid')})"


def port_report(config: AgentConfig) -> list[str]:
    """The agent's ports that another user holds (for doctor): a page tries them in order, so a
    squatter there is met before this user's agent (the page's pairing check refuses it)."""
    from cert_agent.agent.instance import serving_port
    from cert_agent.agent.peers import port_holders

    serving = serving_port()
    lines = []
    for port in config.ports():
        if port == serving:
            break  # ports after this user's agent are never reached by its pages
        for taken in port_holders(port):
            if not taken.mine:
                lines.append(f"✗ 端口 {port}: {taken}；网页会先尝试该端口 (port {port} is held by {taken.user})")
    return lines


def _report_cards(token_readers: list[str], out: TextIO) -> bool:
    """Each card in a reader, and whether a loaded module shows it; False if one has no driver."""
    from cert_agent.drivers.catalog import current_system, default_catalog
    from cert_agent.drivers.pcsc import current_cards

    all_driven = True
    for reader, atr in sorted(current_cards().items()):
        if atr is None:
            continue
        if any(reader in r or r in reader for r in token_readers):
            print(f"✓ 读卡器 {reader}: 证书介质 (ATR {atr.hex().upper()})", file=out)
            continue
        all_driven = False
        entry = default_catalog().for_atr(atr)
        advice = (
            f"请安装“{entry.name}”({', '.join(entry.module_files(current_system())) or '见厂商说明'})"
            if entry
            else "请安装介质厂商提供的驱动程序"
        )
        print(
            f"✗ 读卡器 {reader}: 已检测到证书介质 (ATR {atr.hex().upper()})，但未安装其驱动程序；{advice}"
            " (a medium is in the reader but no driver for it is installed)",
            file=out,
        )
    return all_driven


def pcscd_status() -> tuple[bool, str]:
    """Whether the PC/SC service answers, and how many readers it has."""
    from smartcard.Exceptions import SmartcardException
    from smartcard.pcsc.PCSCExceptions import BaseSCardException
    from smartcard.System import readers

    try:
        found = readers()
    except (SmartcardException, BaseSCardException) as exc:
        return False, f"pcscd: 无法连接 (not reachable: {exc})"
    return True, f"pcscd: 运行中，{len(found)} 个读卡器 (running, {len(found)} readers)"


def _problems(driver: TokenDriver) -> list[dict[str, Any]]:
    return [p.to_dict() for p in driver.problems]


def _print_problems(driver: TokenDriver) -> None:
    for problem in driver.problems:
        print(f"✗ {problem.error.message}: {problem.error.detail} [{problem.error.code}]", file=sys.stderr)


def _print_json(out: TextIO, data: Any) -> None:
    json.dump(data, out, ensure_ascii=False, indent=2)
    out.write("\n")


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _print_table(out: TextIO, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max([_width(h)] + [_width(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        cells = [cell + " " * (widths[i] - _width(cell)) for i, cell in enumerate(row)]
        out.write("  ".join(cells).rstrip() + "\n")
    if not rows:
        out.write("（无 none）\n")


def run() -> None:
    require_extra("desktop", "pkcs11", "smartcard", "platformdirs")
    sys.exit(main())


if __name__ == "__main__":
    run()
