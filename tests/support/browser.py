"""A real Chromium for the console's browser tests: Debian's `chromium` and `chromium-driver`
driven by Selenium, headless, offline, with a fresh profile.

Selenium's calls block, and the alertd under test runs on the test's own event loop, so every
call goes through `asyncio.to_thread`: the page's requests are served while we wait.

Locally the tests skip, with a one-line reason, when Chromium is missing; under `CI=true` a
missing browser fails them (CI installs it: .ci/run).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless, no network of its own (the machine's is closed), nothing fetched behind our back.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,900")  # fmt: skip

T = TypeVar("T")


def require_chromium() -> None:
    """Skip (locally) or fail (CI) when the browser or its driver is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401  (a dev dependency; checked like the browser)
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return
    reason = f"browser tests need {', '.join(missing)} (apt-get install chromium chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


class Browser:
    """One Chromium; async wrappers around the Selenium calls the tests use."""

    def __init__(self, profile: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        self.driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        self.driver.set_page_load_timeout(20)

    def close(self) -> None:
        self.driver.quit()

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(call, *args)

    async def get(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return await self.run(self.driver.find_element, By.CSS_SELECTOR, css)

    async def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(await self.run(self.driver.find_elements, By.CSS_SELECTOR, css))

    async def text(self, css: str = "body") -> str:
        return str(await self._fresh(css, lambda element: element.text))

    async def click(self, css: str) -> None:
        await self._fresh(css, lambda element: element.click())

    async def _fresh(self, css: str, act: Callable[[Any], T]) -> T:
        """`act` on the element `css` finds, finding it again if the page's refresh swapped
        it out in between (the board replaces its live part every refresh), or waiting a little
        for it while a navigation (a link, a form's redirect) is still loading the page."""
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
        )

        for _ in range(50):
            try:
                return await self.run(act, await self.find(css))
            except (StaleElementReferenceException, NoSuchElementException):
                await asyncio.sleep(0.1)
        return await self.run(act, await self.find(css))

    async def fill(self, css: str, value: str) -> None:
        element = await self.find(css)
        await self.run(element.clear)
        await self.run(element.send_keys, value)

    async def script(self, source: str) -> Any:
        return await self.run(self.driver.execute_script, source)

    async def until(self, what: str, check: Callable[[], bool], within: float = 30) -> None:
        """Poll `check` (in a thread: it may call Selenium) until true, or fail naming `what`."""
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
        )

        def probe() -> bool:
            try:
                return check()
            except (StaleElementReferenceException, NoSuchElementException):
                return False  # swapped by a refresh, or the next page still loading

        deadline = time.monotonic() + within
        while not await self.run(probe):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.1)

    async def alert_open(self) -> bool:
        from selenium.common.exceptions import NoAlertPresentException

        def probe() -> bool:
            try:
                self.driver.switch_to.alert  # noqa: B018  (the property raises when none)
            except NoAlertPresentException:
                return False
            return True

        return await self.run(probe)

    async def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.run(self.driver.save_screenshot, str(path))


def browser_session(tmp: Path) -> Iterator[Browser]:
    require_chromium()
    profile = tmp / "chromium-profile"
    profile.mkdir()
    browser = Browser(profile)
    try:
        yield browser
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)
