"""Helpers for tests in a real browser: Debian's Chromium driven by Playwright, pages served by
a real aiohttp server on loopback."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from softhsm_fixtures import Fixtures
from tests.harness.agent import RunningAgent, free_port, running_agent

WEB_DIR = Path(__file__).resolve().parents[2] / "cert_agent" / "web"
ARTIFACTS = Path(os.environ.get("CERT_AGENT_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts"))

# What a headless Chromium needs on a closed network, as root, with no first-run noise.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = os.environ.get("CERT_AGENT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        raise FileNotFoundError("Debian's chromium is not installed (apt-get install chromium)")
    return found


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


BLANK_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>测试页</title></head>
<body><script type="module">
import * as agent from "/static/cert-agent.js";
window.certAgent = agent;
window.ready = true;
</script></body></html>"""


@asynccontextmanager
async def page_server(port: int) -> AsyncIterator[str]:
    """Serve cert-agent.js under /static/ and a blank page that imports it, on 127.0.0.1:port."""

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=BLANK_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_static("/static/", WEB_DIR)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def page_with_agent(fixtures: Fixtures, **overrides: Any) -> AsyncIterator[tuple[Page, RunningAgent, str]]:
    page_port = free_port()
    origin = f"http://127.0.0.1:{page_port}"
    overrides.setdefault("allowed_origins", (origin,))
    async with (
        running_agent(fixtures, **overrides) as agent,
        page_server(page_port) as url,
        chromium() as browser,
    ):
        page = await browser.new_page()
        await page.goto(url)
        await page.wait_for_function("window.ready === true")
        yield page, agent, origin


async def call(page: Page, script: str, arg: Any = None) -> Any:
    """Run ``script`` (the body of an async function of ``agent`` module and ``arg``) in the page;
    a CertAgentError comes back as {"code", "message", "details"}."""
    return await page.evaluate(
        f"""async ([arg]) => {{
            const m = window.certAgent;
            try {{ return await (async (arg) => {{ {script} }})(arg); }}
            catch (e) {{ return {{ code: e.code, message: e.message, details: e.details, name: e.name }}; }}
        }}""",
        [arg],
    )
