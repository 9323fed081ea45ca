"""``cert-agent doctor``: is everything in place for a login? Each check prints one line or a
few (✓ fine, • worth knowing, ✗ wrong); the command fails when a check found something wrong.

The checks: the vendor libraries (PKCS#11 modules and SKF libraries) and their media, locked
ones and ones still on their default PIN, pcscd and the cards in its readers (a card no
library shows a token for has no driver: the same judgement the daemon makes,
``tokens/cards.py``), this user's agent, the agent's ports held by other users, autostart, and
the browsers' managed policy for the configured origins.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from cert_agent.agent.config import AgentConfig, load_config
from cert_agent.drivers.interface import TokenDriver
from cert_agent.drivers.models import PinState


def check_libraries(driver: TokenDriver, modules: list[str], out: TextIO) -> tuple[bool, list[str]]:
    """Each library and its media; (all loaded, the readers their tokens sit in)."""
    healthy = bool(modules)
    if not modules:
        print("✗ 未找到 PKCS#11 模块 (no PKCS#11 module found; use --module)", file=out)
    from cert_agent.drivers.factory import SKF, library_interface

    failed = {p.module: p for p in driver.problems}
    tokens = driver.tokens()
    for module in modules:
        kind = "SKF 库" if library_interface(module) == SKF else "模块"
        if module in failed:
            print(f"✗ {kind} {module}: {failed[module].error.detail}", file=out)
            healthy = False
            continue
        own = [t for t in tokens if t.module == module]
        print(f"✓ {kind} {module}: {len(own)} 个证书介质", file=out)
        for token in own:
            print(f"    {token.label} ({token.medium.value}, {token.serial}, PIN {token.pin_state.value})", file=out)
            if token.pin_state is PinState.LOCKED:
                advice = "证书密码已锁定，请联系主管税务机关或介质服务单位解锁 (PIN locked)"
                print(f"    ✗ {token.label}: {advice}", file=out)
            elif token.pin.is_default:
                print(f"    • {token.label}: 证书密码仍为初始密码，请尽快修改 (the PIN is still the default)", file=out)
    return healthy, [t.reader for t in tokens if t.reader]


def check_cards(token_readers: list[str], out: TextIO) -> bool:
    """Each card in a reader, and whether a loaded library shows it; False if one has no driver."""
    from cert_agent.agent.tokens.cards import is_driven, medium_problem
    from cert_agent.drivers.pcsc import current_cards

    all_driven = True
    for reader, atr in sorted(current_cards().items()):
        if atr is None:
            continue
        if is_driven(reader, token_readers):
            print(f"✓ 读卡器 {reader}: 证书介质 (ATR {atr.hex().upper()})", file=out)
            continue
        all_driven = False
        problem = medium_problem(reader, atr)
        advice = (
            f"请安装“{problem.driver}”({', '.join(problem.driver_modules) or '见厂商说明'})"
            if problem.driver
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


def agent_status() -> str:
    """Whether this user's agent is running, and on which port."""
    from cert_agent.agent.instance import holder

    running = holder()
    if running is None:
        return "✗ 证书助手未运行 (cert-agent serve is not running)"
    if running.get("command") != "serve":
        return f"• 证书助手正在修改证书密码 (change-pin running, pid {running.get('pid')})"
    return f"✓ 证书助手运行中，端口 {running.get('port')} (cert-agent serve running, pid {running.get('pid')})"


def port_report(config: AgentConfig) -> list[str]:
    """The agent's ports that another user holds: a page tries them in order, so a squatter there
    is met before this user's agent (the page's pairing check refuses it)."""
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


def check_desktop(config_path: Path | None, out: TextIO) -> bool:
    """Autostart and the browsers' policy for the configured origins; False on a bad configuration."""
    from cert_agent.desktop import autostart, browser_policy

    state = autostart.status(Path.home())
    print(
        ("✓ 开机自动启动：已开启 " if state.enabled else "• 开机自动启动：未开启 ") + f"(autostart: {state.where})",
        file=out,
    )
    try:
        origins = load_config(config_path).allowed_origins
    except ValueError as exc:
        print(f"✗ 配置错误 (configuration error): {exc}", file=out)
        return False
    if not origins:
        print(
            "• 未配置允许的网站，浏览器策略无从设置 (no allowed origins configured: no browser policy to check)",
            file=out,
        )
        return True
    for browser, allowed in browser_policy.status(origins).items():
        mark = "✓" if allowed else "•"
        print(
            f"{mark} {browser} 浏览器策略 (managed policy) {'允许' if allowed else '未允许'} {', '.join(origins)}",
            file=out,
        )
    return True


def run_doctor(driver: TokenDriver, modules: list[str], config_path: Path | None, out: TextIO) -> bool:
    """Every check, in order; True when none found anything wrong."""
    healthy, token_readers = check_libraries(driver, modules, out)
    pcsc_ok, pcsc_text = pcscd_status()
    print(("✓ " if pcsc_ok else "✗ ") + pcsc_text, file=out)
    if pcsc_ok and not check_cards(token_readers, out):
        healthy = False
    print(agent_status(), file=out)
    try:
        for line in port_report(load_config(config_path)):
            print(line, file=out)
    except ValueError:
        pass  # the configuration error is reported by check_desktop
    return check_desktop(config_path, out) and healthy
