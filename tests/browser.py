"""A headless Chromium for the dashboard's tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download is not used: ``executable_path`` points at the system
browser (``.ci/run`` installs it). :class:`Watched` records what a page must never do:
log a console error, throw, or send a request to any host but the service's.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlsplit

#: Where Debian installs Chromium (``apt-get install chromium``).
CHROMIUM = "/usr/bin/chromium"


def chromium_path() -> str:
    """The system Chromium; an error saying how to install it when missing."""
    path = shutil.which("chromium") or (CHROMIUM if shutil.which(CHROMIUM) else None)
    if path is None:
        raise RuntimeError("chromium is not installed: `apt-get install -y chromium`")
    return path


@dataclass
class Watched:
    """A page and what went wrong on it (console errors, exceptions, foreign requests)."""

    page: Any
    host: str = "127.0.0.1"
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [
            *(f"console error: {m}" for m in self.console_errors),
            *(f"page error: {m}" for m in self.page_errors),
            *(f"request to another host: {u}" for u in self.foreign),
        ]

    def goto(self, url: str, page: str) -> None:
        """Open ``url`` and wait until the dashboard has drawn ``page``."""
        self.page.goto(url)
        self.wait_page(page)

    def wait_page(self, page: str) -> None:
        self.page.wait_for_selector(f"main[data-page='{page}'][data-ready='1']", timeout=30_000)


@contextmanager
def browser(host: str = "127.0.0.1", *, width: int = 1360, height: int = 900) -> Iterator[Watched]:
    """One headless page whose requests may reach ``host`` only (others are aborted)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            context = b.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            w = Watched(page, host)

            def guard(route: Any) -> None:
                url = route.request.url
                w.requests.append(url)
                if urlsplit(url).hostname != host:
                    w.foreign.append(url)
                    route.abort()
                else:
                    route.continue_()

            context.route("**/*", guard)
            page.on("console", lambda m: m.type == "error" and w.console_errors.append(m.text))
            page.on("pageerror", lambda e: w.page_errors.append(str(e)))
            yield w
        finally:
            b.close()


# The page's number formats (static/app.js), for comparing what it shows with the APIs.
def count(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def fixed(x: float | None, digits: int) -> str:
    """JavaScript's ``Number.prototype.toFixed``: the exact value, halves rounded up."""
    if x is None:
        return "–"
    q = Decimal(1).scaleb(-digits)
    return str(Decimal(x).quantize(q, rounding=ROUND_HALF_UP))


def pct(x: float | None) -> str:
    return "–" if x is None else fixed(100 * x, 1) + "%"
