"""Browser fixtures: the real ``xenkeepd`` process and a headless Chromium.

The daemon runs as a subprocess exactly as on the appliance (its own event
loop, its own TLS listener, its own setup-token file), with all state under
tmp_path. Chromium trusts that daemon's self-signed certificate by pinning
its public key, so a certificate problem still fails the test instead of
being clicked through.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.ui import UI, ChromeFactory, Daemon, free_port, spki_pin

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "out" / "screenshots"

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

# Variables that would make the child think it runs under systemd (journal
# logging, sd_notify to our service manager) or change its settings.
_INHERITED_DROP = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")


def _xenkeepd_argv() -> list[str]:
    script = Path(sys.executable).with_name("xenkeepd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "xenkeep"]


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _healthy(url: str, cert: Path) -> bool:
    if not cert.exists():
        return False
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        health = url + "api/v1/health"  # always https://127.0.0.1:<port>/
        with urllib.request.urlopen(health, context=ctx, timeout=5) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (OSError, ssl.SSLError, urllib.error.URLError):
        return False


@pytest.fixture
def xenkeepd(tmp_path: Path) -> Iterator[Daemon]:
    """A real ``xenkeepd`` on a free loopback port, state under tmp_path."""
    state = tmp_path / "state"
    run = tmp_path / "run"
    config = tmp_path / "xenkeep.toml"
    config.touch()
    log_path = tmp_path / "xenkeepd.log"
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("XENKEEP_") and k not in _INHERITED_DROP
    }
    env.update(
        {
            "XENKEEP_STATE_DIR": str(state),
            "XENKEEP_RUN_DIR": str(run),
            "XENKEEP_LISTEN": "127.0.0.1",
            "XENKEEP_HTTPS_PORT": str(port),
            "XENKEEP_HTTP_PORT": "0",
            # The test's simulator speaks plain http: development mode only.
            "XENKEEP_DEV": "true",
            "XENKEEP_CONFIG": str(config),
            "XENKEEP_HOSTNAME": "xenkeep-browser-test",
        }
    )
    daemon = Daemon(
        url=f"https://127.0.0.1:{port}/",
        cert_path=state / "tls" / "cert.pem",
        token_path=run / "setup-token",
        log_path=log_path,
    )
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            _xenkeepd_argv(), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(daemon.url, daemon.cert_path):
            if proc.poll() is not None:
                pytest.fail(f"xenkeepd exited with {proc.returncode}:\n{_log_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"xenkeepd not healthy after {START_TIMEOUT}s:\n{_log_tail(log_path)}")
            time.sleep(0.1)
        yield daemon
    finally:
        crashed = proc.poll()
        if crashed is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if crashed is not None:
        pytest.fail(f"xenkeepd died during the test ({crashed}):\n{_log_tail(log_path)}")
    assert proc.returncode == 0, f"xenkeepd did not stop cleanly:\n{_log_tail(log_path)}"


@pytest.fixture
def chrome_factory(tmp_path: Path) -> Iterator[ChromeFactory]:
    """Start headless Chromiums pinning a given SPKI hash (or none); quit them after."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("chromium / chromium-driver missing: run scripts/deps.sh test")
    drivers: list[webdriver.Chrome] = []

    def start(pin: str | None) -> webdriver.Chrome:
        opts = webdriver.ChromeOptions()
        opts.binary_location = str(CHROMIUM)
        profile = tmp_path / f"chrome-profile-{len(drivers)}"
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--window-size=1280,900",
            "--lang=en-US",
            f"--user-data-dir={profile}",
        ):
            opts.add_argument(arg)
        if pin is not None:
            opts.add_argument(f"--ignore-certificate-errors-spki-list={pin}")
        # Password-manager and leak-check bubbles would sit over the forms.
        opts.add_experimental_option(
            "prefs",
            {
                "credentials_enable_service": False,
                "profile.password_manager_enabled": False,
                "profile.password_manager_leak_detection": False,
            },
        )
        service = Service(
            executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log")
        )
        driver = webdriver.Chrome(options=opts, service=service)
        drivers.append(driver)
        driver.set_page_load_timeout(60)
        return driver

    try:
        yield start
    finally:
        for driver in drivers:
            driver.quit()


@pytest.fixture
def chrome(chrome_factory: ChromeFactory, xenkeepd: Daemon) -> WebDriver:
    """A headless Chromium that trusts exactly ``xenkeepd``'s certificate key."""
    return chrome_factory(spki_pin(xenkeepd.cert_path))


@pytest.fixture
def ui(chrome: WebDriver, xenkeepd: Daemon) -> UI:
    """The daemon's pages as a person drives them, screenshots to out/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return UI(chrome, xenkeepd, SCREENSHOTS)
