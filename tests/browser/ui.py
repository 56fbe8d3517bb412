"""Driving XenKeep's pages in Chromium the way a person does.

Every action waits for what a person would wait for (the next page, a
visible message) with generous timeouts: the build machines are shared and
slow at times, and no assertion here depends on how long anything takes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT_SECONDS = 30.0
SCREEN_WIDTH = 1280
MIN_SCREEN_HEIGHT = 800
MAX_SCREEN_HEIGHT = 4000

# Starts a browser pinning the given SPKI hash (None: trust nothing extra).
ChromeFactory = Callable[[str | None], WebDriver]


@dataclass(frozen=True, slots=True)
class Daemon:
    """A running ``xenkeepd``: where to reach it and the files it writes."""

    url: str
    cert_path: Path
    token_path: Path
    log_path: Path

    def setup_token(self) -> str:
        """The one-time token, as the console shows it."""
        return self.token_path.read_text().strip()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spki_pin(cert_path: Path) -> str:
    """Base64 SHA-256 of the certificate's SubjectPublicKeyInfo (Chromium's pin format)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def _page_replaced(mark: str) -> Callable[[WebDriver], bool]:
    """A wait condition: the page marked with ``mark`` has been replaced and loaded."""

    def replaced(driver: WebDriver) -> bool:
        try:
            return bool(
                driver.execute_script(
                    "return window.xkPageMark !== arguments[0]"
                    " && document.readyState === 'complete';",
                    mark,
                )
            )
        except WebDriverException:
            return False  # between two documents: ask again

    return replaced


class UI:
    """One browser tab on one daemon."""

    def __init__(self, driver: WebDriver, daemon: Daemon, screenshots: Path) -> None:
        self.driver = driver
        self.daemon = daemon
        self.screenshots = screenshots
        self.wait = WebDriverWait(driver, WAIT_SECONDS)

    # --- navigation -----------------------------------------------------------------

    def open(self, path: str) -> None:
        """Type a URL of the daemon into the address bar."""
        self.driver.get(self.daemon.url.rstrip("/") + path)

    def path(self) -> str:
        """The path (and query) of the page shown now."""
        url = str(self.driver.current_url)
        return "/" + url.split("/", 3)[3] if url.count("/") >= 3 else url

    def wait_for(self, css: str) -> WebElement:
        """The element once it is visible."""
        found: WebElement = self.wait.until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, css)),
            f"{css} never became visible on {self.driver.current_url}",
        )
        return found

    def wait_step(self, name: str) -> None:
        """Wait until the wizard shows step ``name``."""
        self.wait_for(f"#step-{name}")
        assert self.path() == f"/setup/{name}", self.path()

    def submit(self, button: WebElement) -> None:
        """Click a submit button and wait for the page it leads to."""
        # Each page gets a fresh window object, so a mark left on this one is
        # gone once the next page is there. Polling a mark instead of an element
        # of the old page avoids chromedriver's race: asked about a node while
        # the document is being replaced, it may answer with an "unknown error"
        # ("Node ... does not belong to the document") rather than "stale".
        mark = secrets.token_hex(8)
        self.driver.execute_script("window.xkPageMark = arguments[0];", mark)
        button.click()
        self.wait.until(_page_replaced(mark), "the form submission never loaded a page")
        self.wait_for("main.content, body")

    def click_primary(self) -> None:
        """Press the form's main button."""
        self.submit(self.driver.find_element(By.CSS_SELECTOR, "main form button.primary"))

    # --- reading and typing ----------------------------------------------------------

    def fill(self, name: str, text: str) -> None:
        """Replace a text field's content, as typing would."""
        field = self.wait_for(f"#f-{name}")
        field.clear()
        field.send_keys(text)

    def choose(self, name: str, visible_text: str) -> None:
        """Pick an entry of a drop-down list by what it shows."""
        Select(self.wait_for(f"#f-{name}")).select_by_visible_text(visible_text)

    def choose_value(self, name: str, value: str) -> None:
        """Pick an entry of a drop-down list by the value it submits."""
        Select(self.wait_for(f"#f-{name}")).select_by_value(value)

    def text(self, css: str) -> str:
        """The visible text of an element."""
        return str(self.wait_for(css).text)

    def error(self) -> str:
        """The form's error message, which must be visible."""
        return self.text("#form-error")

    def wait_text(self, css: str, *wanted: str, seconds: float = 60) -> str:
        """Wait until ``css`` shows one of ``wanted`` (returned); the page may
        replace the element or reload meanwhile (a run's page does once the
        run ends)."""
        deadline = time.monotonic() + seconds
        shown = ""
        while time.monotonic() < deadline:
            try:
                shown = self.text(css)
            except WebDriverException:
                # Stale, or chromedriver's "node does not belong to the
                # document" while the reload swaps documents: look again.
                time.sleep(0.2)
                continue
            if shown in wanted:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{css} shows {shown!r}, never one of {wanted!r}")

    def has(self, css: str) -> bool:
        """True when the page has such an element now."""
        return bool(self.driver.find_elements(By.CSS_SELECTOR, css))

    def heading(self) -> str:
        """The page's main heading."""
        return self.text("main h1")

    # --- screenshots ------------------------------------------------------------------

    def shot(self, name: str) -> Path:
        """Save the whole page as out/screenshots/<name>.png."""
        # The window includes the browser's own frame: grow it by the page's
        # overflow so the screenshot holds the whole page without a scrollbar.
        page, viewport, window = self.driver.execute_script(
            "const e = document.documentElement;"
            "return [e.scrollHeight, window.innerHeight, window.outerHeight];"
        )
        wanted = int(window) + max(0, int(page) - int(viewport))
        self.driver.set_window_size(
            SCREEN_WIDTH, max(MIN_SCREEN_HEIGHT, min(wanted, MAX_SCREEN_HEIGHT))
        )
        path = self.screenshots / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        return path

    # --- flows used by several tests --------------------------------------------------

    def enter_setup_token(self, token: str) -> None:
        """On the token step: type a token and continue."""
        self.fill("token", token)
        self.click_primary()

    def set_up_through_api(self, username: str, password: str) -> None:
        """First boot without the wizard's pages: the setup token and the
        administrator through the API from a page; signed in as them after."""
        self.open("/login")
        status, body = self.fetch_json(
            "POST", "/api/v1/setup/token", {"token": self.daemon.setup_token()}
        )
        assert status == 200, body
        status, body = self.fetch_json(
            "POST",
            "/api/v1/setup/admin",
            {"username": username, "password": password, "confirm": password},
        )
        assert status == 201, body

    def create_admin(self, username: str, password: str, confirm: str | None = None) -> None:
        """On the administrator step: fill the form and submit it."""
        self.fill("username", username)
        self.fill("password", password)
        self.fill("confirm", password if confirm is None else confirm)
        self.click_primary()

    def sign_in(self, username: str, password: str, code: str = "") -> None:
        """On the sign-in page: fill the form and submit it."""
        self.wait_for("form input#f-username")
        self.fill("username", username)
        self.fill("password", password)
        self.fill("code", code)
        self.click_primary()

    def sign_out(self) -> None:
        """Press "Sign out" in the top bar and land on the sign-in page."""
        self.submit(self.driver.find_element(By.CSS_SELECTOR, "header nav form button"))
        self.wait_for("form input#f-username")
        assert self.path().startswith("/login"), self.path()

    def signed_in_as(self) -> str | None:
        """The user name shown in the top bar, None when signed out."""
        links = self.driver.find_elements(By.CSS_SELECTOR, "header nav a[href='/account']")
        return str(links[0].text) if links else None

    def add_pool(self, pool_url: str) -> dict[str, Any]:
        """Register the simulator's pool through the API from a page; the pool."""
        status, body = self.fetch_json(
            "POST", "/api/v1/pools", {"url": pool_url, "username": "root", "password": "demo"}
        )
        assert status == 201, body
        return dict(body["pool"])

    def fetch_json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the JSON API from the page, with the browser's cookies and a CSRF token."""
        script = """
            const [method, path, body, done] = arguments;
            (async () => {
              const c = await fetch('/api/v1/csrf', {credentials: 'same-origin'});
              const token = (await c.json()).csrf_token;
              const r = await fetch(path, {
                method, credentials: 'same-origin',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': token},
                body: body === null ? undefined : JSON.stringify(body)});
              done(JSON.stringify({status: r.status, body: await r.text()}));
            })().catch(e => done(JSON.stringify({status: -1, body: String(e)})));
        """
        raw = self.driver.execute_async_script(script, method, path, body)
        result = json.loads(str(raw))
        status = int(result["status"])
        assert status > 0, result["body"]
        return status, json.loads(result["body"])
