"""The embedded demo: the agent and the verifier on this machine, SoftHSM2 tokens and an SM2
device of the software SKF library as tax media.

Builds a fresh demo PKI and three PKCS#11 media in ``.demo/`` (its own SOFTHSM2_CONF, never the
system's) and an SM2 税务UKey behind the SKF interface under its own SM2 PKI (``.demo/skf``),
seeds the verifier's SQLite database, starts the agent (ws://127.0.0.1:27138/ws) and
the verifier (http://127.0.0.1:8090/), and prints the URL, the demo PINs and every SMS code as
it is sent. Ctrl-C stops both. Running it again starts from scratch.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from cert_agent.agent.config import DEFAULT_PORT, AgentConfig
from cert_agent.common.errors import CertAgentError
from cert_agent.common.running import until_stopped
from softhsm_fixtures.skf_build import SkfFixtures, build_skf_fixtures
from softhsm_fixtures.taxpayers import DEMO_SKF_MEDIA, DEMO_TOKENS

if TYPE_CHECKING:
    from softhsm_fixtures import Fixtures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".demo"), help="where the demo keeps its files")
    parser.add_argument("--port", type=int, default=8090, help="the verifier's port")
    parser.add_argument("--agent-port", type=int, default=DEFAULT_PORT, help="the agent's port")
    args = parser.parse_args(argv)
    from softhsm_fixtures import build_fixtures

    # The tokens are made before the event loop starts: provisioning calls PKCS#11.
    if args.dir.exists():
        shutil.rmtree(args.dir)
    args.dir.mkdir(parents=True)
    fixtures: Fixtures = build_fixtures(args.dir / "fixtures", tokens=DEMO_TOKENS)
    os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)  # the agent's workers inherit it
    shutil.rmtree(args.dir / "skf", ignore_errors=True)
    skf = build_skf_fixtures(args.dir / "skf", media=DEMO_SKF_MEDIA)  # the SM2 medium, on the soft SKF device
    os.environ.update(skf.environ())
    try:
        asyncio.run(run_demo(fixtures, skf, args.dir, args.port, args.agent_port))
    except (OSError, CertAgentError) as exc:
        print(f"演示无法启动 (demo could not start): {exc}", file=sys.stderr)
        return 1
    return 0


async def run_demo(fixtures: Fixtures, skf: SkfFixtures, directory: Path, port: int, agent_port: int) -> None:
    from cert_agent.agent.server import CONFIG_KEY
    from cert_agent.agent.server import start as start_agent
    from cert_agent.verifier.app import create_app
    from cert_agent.verifier.apps import register as register_app
    from cert_agent.verifier.store import Person
    from softhsm_fixtures.verifier_service import seeded_login_service

    origin = f"http://127.0.0.1:{port}"
    credential = ""  # the demo's tax app, registered below

    def announce(record: dict[str, str]) -> None:
        print(f"[短信 SMS] {record['phone']}: 验证码 {record['code']}", flush=True)

    def announce_scan(code: str, person: Person) -> None:
        # the demo's phone: the reference tax app answers the code as the app does after the face check
        verifier = f"{sys.executable} -m cert_agent.verifier"
        command = f"{verifier} scan-confirm '{code}' --id-number {person.id_number}"
        print(f"[扫码 SCAN] {person.name}的手机 (the phone); 在另一个终端运行 (run in another terminal):", flush=True)
        print(f"  CERT_VERIFIER_APP_CREDENTIAL={credential} {command}", flush=True)

    login = await seeded_login_service(fixtures, directory, origin, on_send=announce, skf=skf, on_scan=announce_scan)
    credential = (await register_app(login.store, "青岛税务APP（演示）", dt.datetime.now(dt.UTC))).credential
    verifier = web.AppRunner(create_app(login), access_log=None)
    await verifier.setup()
    try:
        await web.TCPSite(verifier, "127.0.0.1", port).start()
        agent_config = AgentConfig(
            port=agent_port,
            allowed_origins=(origin,),
            modules=(fixtures.module, skf.library),
            pin_max_tries=10,
            pairing_file=str(directory / "pairing.json"),  # the demo's own, never the user's
        )
        agent = await start_agent(agent_config)
        bound = agent.app[CONFIG_KEY].port  # the next port of the range when another holds the first
        try:
            await until_stopped(lambda: _print_welcome(origin, bound, fixtures, skf))
            print("\n正在停止演示 (stopping)…", flush=True)
        finally:
            await agent.cleanup()
    finally:
        await verifier.cleanup()


def _print_welcome(origin: str, agent_port: int, fixtures: Fixtures, skf: SkfFixtures) -> None:
    url = origin + "/" if agent_port == DEFAULT_PORT else f"{origin}/?agentPort={agent_port}"
    lines = [
        "",
        "电子税务局证书登录演示 (cert-agent demo)",
        f"  打开 (open):   {url}",
        f"  证书助手:       ws://127.0.0.1:{agent_port}/ws",
        "  演示证书介质 (demo media) 与证书密码 (PINs):",
    ]
    notes = {
        "demo-enterprise": "企业业务；仍为初始密码，登录后请修改",
        "demo-agency": "代理业务；有两家被代理企业",
        "demo-tax-control-disk": "企业业务",
    }
    for token in fixtures.tokens:
        lines.append(f"    {token.label:<14} 证书密码 {token.pin:<10} {notes.get(token.name, '')}")
    for medium in skf.media:  # the tax UKey's default PIN, as its client code has it (taxpayers.py)
        lines.append(f"    {medium.label:<14} 证书密码 {medium.pin:<10} 国密 SM2（SKF）；仍为初始密码，登录后请修改")
    lines += [
        "  短信验证码与扫码验证的手机命令会显示在下面 (SMS codes and the phone's scan command appear below).",
        "  Ctrl-C 停止 (stops).",
        "",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
