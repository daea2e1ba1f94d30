"""The dashboard page in a real browser (Debian's Chromium, driven through chromedriver by
Selenium), fed by real traffic: three SDK clients through a real router in front of the
tier's real LiteLLM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.clients import CLAUDE_CODE_MODEL, PYCHARM_UA, Clients, chat
from tests.support.environment import clean_env
from tests.support.provision import ProvisionError, system_tool

from .conftest import LOG_DIR
from .services import LiteLLM, Secrets, serving, shipped_router_argv

pytestmark = pytest.mark.e2e

PAGE_TIMEOUT = 20.0  # the page polls every 3 s; a few rounds at most
WIDE, NARROW = (1280, 900), (420, 860)
JET, CLAUDE, APP = "pycharm-ai-chat", "claude-code-cli", "my-project"


@pytest.fixture
def own_router(litellm: LiteLLM, e2e_secrets: Secrets, tmp_path: Path) -> Iterator[str]:
    """A router of this test's own, so that its counts are this test's traffic alone."""
    env = clean_env(SUPERMEMORY_API_KEY=e2e_secrets.supermemory_key)
    argv = shipped_router_argv(litellm.url)
    with serving("memory-router-dashboard", "router", argv, env=env, cwd=tmp_path) as (_, url):
        yield url


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    try:
        chromium = system_tool("chromium", LOG_DIR)
        driver_path = system_tool("chromedriver", LOG_DIR)
    except ProvisionError as exc:
        pytest.fail(f"the dashboard test needs Chromium and chromedriver: {exc}", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={WIDE[0]},{WIDE[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver_path, log_output=str(LOG_DIR / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def cells(driver: WebDriver, column: str) -> dict[str, str]:
    """The text of ``column`` in every row, by client id."""
    found: dict[str, str] = {}
    for row in driver.find_elements(By.CSS_SELECTOR, "#clients tbody tr"):
        user = row.get_attribute("data-user-id") or ""
        found[user] = row.find_element(By.CSS_SELECTOR, f'td[data-col="{column}"]').text
    return found


def wait_for_counts(driver: WebDriver, expected: dict[str, str]) -> dict[str, str]:
    def shown(d: Any) -> dict[str, str] | bool:
        counts = cells(d, "requests")
        return counts if counts == expected else False

    try:
        result: dict[str, str] = WebDriverWait(driver, PAGE_TIMEOUT).until(shown)
    except Exception:
        pytest.fail(f"the page shows {cells(driver, 'requests')}, not {expected}", pytrace=False)
    return result


def order(driver: WebDriver) -> list[str]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#clients tbody tr")
    return [r.get_attribute("data-user-id") or "" for r in rows]


def test_the_dashboard_shows_each_clients_live_traffic(
    own_router: str,
    litellm: LiteLLM,
    e2e_secrets: Secrets,
    clients: Clients,
    browser: WebDriver,
) -> None:
    url = own_router
    key = litellm.master_key
    jetbrains = clients.openai(url, key, {"User-Agent": PYCHARM_UA})
    claude = clients.claude_code(url, key)
    app = clients.openai(url, key, {"x-memory-user-id": APP})

    for i in range(3):
        chat(jetbrains, f"explain line {i}")
    for i in range(2):
        claude.messages.create(
            model=CLAUDE_CODE_MODEL,
            max_tokens=64,
            messages=[{"role": "user", "content": f"refactor {i}"}],
        )
    chat(app, "hello")

    browser.get(url + "/memory-routing/dashboard")
    wait_for_counts(browser, {JET: "3", CLAUDE: "2", APP: "1"})
    sources = cells(browser, "source")
    assert sources == {JET: "pattern", CLAUDE: "pattern", APP: "custom_header"}
    assert cells(browser, "errors_5xx") == {JET: "0", CLAUDE: "0", APP: "0"}
    tokens = cells(browser, "prompt_tokens_per_minute")
    assert all(float(v) > 0 for v in tokens.values()), tokens
    for user, text in cells(browser, "latency_p50_ms").items():
        assert text.endswith(("ms", " s")), (user, text)
    # Each row draws its own chart: bars for the minute the requests came in.
    for row in browser.find_elements(By.CSS_SELECTOR, "#clients tbody tr"):
        assert row.find_elements(By.CSS_SELECTOR, 'td[data-col="chart"] svg rect.req')

    # The header line: the config's hash, LiteLLM ready, the key configured (never shown).
    stats = httpx.get(url + "/memory-routing/stats", timeout=10).json()
    digest = stats["router"]["config"]["sha256"]
    assert browser.find_element(By.ID, "config-hash").text == digest[:12]
    assert browser.find_element(By.ID, "litellm-status").text == "ready"
    assert browser.find_element(By.ID, "key-configured").text == "configured"

    # More traffic shows up without a reload: a value set on the page survives.
    browser.execute_script("window.__notReloaded = 'yes';")
    for i in range(2):
        chat(jetbrains, f"and line {i}")
    chat(app, "again")
    wait_for_counts(browser, {JET: "5", CLAUDE: "2", APP: "2"})
    assert browser.execute_script("return window.__notReloaded;") == "yes"

    # Sortable: by id, both ways, and by count.
    header = browser.find_element(By.CSS_SELECTOR, 'th[data-key="user_id"]')
    header.click()
    assert order(browser) == [CLAUDE, APP, JET]  # text sorts ascending first
    header.click()
    assert order(browser) == [JET, APP, CLAUDE]
    browser.find_element(By.CSS_SELECTOR, 'th[data-key="requests"]').click()
    assert order(browser)[0] == JET

    # At 1280 px every column fits; the token form (no token is needed here) is hidden.
    wrap = browser.find_element(By.CSS_SELECTOR, ".table-wrap")
    fits = "return arguments[0].scrollWidth <= arguments[0].clientWidth;"
    assert browser.execute_script(fits, wrap)
    assert not browser.find_element(By.ID, "token-form").is_displayed()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(LOG_DIR / "dashboard-1280.png"))

    # A narrow window: the id column stays in view, the rest scrolls inside the table.
    browser.set_window_size(*NARROW)
    width = browser.execute_script("return document.documentElement.clientWidth;")
    first = browser.find_element(By.CSS_SELECTOR, "#clients tbody tr td[data-col='user_id']")
    assert first.is_displayed() and first.rect["x"] + first.rect["width"] <= width
    page_width = browser.execute_script("return document.documentElement.scrollWidth;")
    assert page_width <= width + 1, "the page itself must not scroll sideways"
    browser.save_screenshot(str(LOG_DIR / "dashboard-narrow.png"))

    # No console errors, and no Supermemory key anywhere in the page.
    problems = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == []
    assert e2e_secrets.supermemory_key not in browser.page_source
