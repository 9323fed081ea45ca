"""Debian's Firefox ESR driven as a person would, through Mozilla's marionette-driver (PyPI), with
the few page calls the flows use, named as Playwright's so that the flows' helpers
(``tests/harness/pages.py``) drive either browser.

marionette-driver is synchronous; every call runs in a thread (``asyncio.to_thread``), so the
verifier and the agent the test serves on its own event loop go on answering meanwhile.
Firefox starts headless with a fresh profile; ``prefs`` go into its user.js (Local Network
Access prefs, say).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from marionette_driver.errors import MarionetteException
from marionette_driver.marionette import Marionette

from tests.harness.agent import free_port

FIREFOX = "firefox-esr"
_QUIET_PREFS = {
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "browser.aboutwelcome.enabled": False,
    "app.update.disabledForTesting": True,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/",  # remote settings: nowhere (a closed network)
}


def firefox_available() -> bool:
    return shutil.which(FIREFOX) is not None


def _pref(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class FirefoxPage:
    """One Firefox window, with Playwright's names for what the flows call."""

    def __init__(self, client: Marionette) -> None:
        self._client = client

    async def _run(self, call: Any, *args: Any) -> Any:
        return await asyncio.to_thread(call, *args)

    async def goto(self, url: str) -> None:
        await self._run(self._client.navigate, url)

    async def wait_for_selector(self, selector: str, timeout: float = 30_000) -> None:
        """Until an element matching ``selector`` (a CSS list) is displayed."""
        deadline = time.monotonic() + timeout / 1000
        while time.monotonic() < deadline:
            if await self._run(self._displayed, selector):
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{selector} was not shown within {timeout / 1000} s")

    def _displayed(self, selector: str) -> bool:
        try:
            return any(e.is_displayed() for e in self._client.find_elements("css selector", selector))
        except MarionetteException:
            return False  # the page was changing under the query

    async def wait_for_url(self, url: str, timeout: float = 30_000) -> None:
        deadline = time.monotonic() + timeout / 1000
        while time.monotonic() < deadline:
            if await self._run(lambda: self._client.get_url()) == url:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"not at {url} within {timeout / 1000} s")

    async def click(self, selector: str) -> None:
        await self.wait_for_selector(selector)
        await self._run(lambda: self._client.find_element("css selector", selector).click())

    async def fill(self, selector: str, value: str) -> None:
        def fill() -> None:
            element = self._client.find_element("css selector", selector)
            element.clear()
            element.send_keys(value)

        await self.wait_for_selector(selector)
        await self._run(fill)

    async def inner_text(self, selector: str) -> str:
        return str(await self._run(lambda: self._client.find_element("css selector", selector).text))

    async def is_hidden(self, selector: str) -> bool:
        return not await self._run(self._displayed, selector)

    async def eval_on_selector_all(self, selector: str, _script: str) -> list[str]:
        """The text of every element matching ``selector`` (all the flows ask of it)."""
        return list(
            await self._run(
                lambda: [e.get_property("textContent") for e in self._client.find_elements("css selector", selector)]
            )
        )

    async def select_option(self, selector: str, *, label: str) -> None:
        """Choose the option of the <select> whose text is ``label``, as a person does."""

        def select() -> None:
            for option in self._client.find_elements("css selector", f"{selector} option"):
                if option.get_property("textContent") == label:
                    option.click()
                    return
            raise LookupError(f"no option {label!r} in {selector}")

        await self._run(select)

    async def screenshot(self, *, path: str, full_page: bool = True) -> None:
        png = await self._run(lambda: self._client.screenshot(format="binary", full=full_page))
        Path(path).write_bytes(png)


@asynccontextmanager
async def firefox(
    prefs: Mapping[str, Any] | None = None, *, accept_test_certificates: bool = False
) -> AsyncIterator[FirefoxPage]:
    """A headless Firefox with a fresh profile; ``accept_test_certificates`` for a page served
    over https with the tests' self-signed certificate."""
    port = free_port()
    profile = Path(tempfile.mkdtemp(prefix="firefox-profile-"))
    lines = [f"user_pref({_pref(name)}, {_pref(value)});" for name, value in {**_QUIET_PREFS, **(prefs or {})}.items()]
    lines.append(f'user_pref("marionette.port", {port});')
    (profile / "user.js").write_text("\n".join(lines) + "\n", encoding="utf-8")
    process = subprocess.Popen(
        [FIREFOX, "--headless", "--marionette", "--no-remote", "--profile", str(profile)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = Marionette(host="127.0.0.1", port=port, startup_timeout=60)
    try:
        await asyncio.to_thread(client.start_session, {"acceptInsecureCerts": accept_test_certificates})
        yield FirefoxPage(client)
    finally:
        with suppress(MarionetteException, OSError):
            await asyncio.to_thread(client.delete_session)
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)
