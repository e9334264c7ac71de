"""The dashboard in headless Chromium (Debian's), driven by Playwright, against `callbridge serve`.

These tests use the page the way a person would: log in, check a CSV, create and start a
campaign, watch it to the end without reloading, pause and resume it, read a contact's attempts,
and read a campaign's policy, attention items and follow-ups.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Request, expect, sync_playwright

from bridge.sandbox.wire import UNVERIFIED_FROM
from tests.campaign_flow import outbound_campaign, predicted
from tests.service import API_KEY, Service, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Named in the README; artifacts/ is git-ignored.
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}


pytestmark = pytest.mark.service_env(
    # Calls that talk for a while, so a campaign runs long enough to pause it.
    CALLBRIDGE_SANDBOX_TALK_SECONDS="1.5",
)


@pytest.fixture
def browser(service: Service) -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread while it is open: it starts after,
    # and stops before, the fixtures that run their own (the PostgreSQL test database's).
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/dev-setup.sh (README, first command)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=LAPTOP, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    # Nothing may come from outside the service: the page ships everything it needs.
    outside: list[str] = []

    def check(request: Request) -> None:
        if not request.url.startswith(("http://127.0.0.1:", "data:", "blob:")):
            outside.append(request.url)

    page.on("request", check)
    # A style or script the Content-Security-Policy blocks shows up here, and would show wrongly.
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield page
    context.close()
    assert not outside, f"requests left the service: {outside}"
    assert not refused, f"the page broke its own Content-Security-Policy: {refused}"


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


# Last two digits -> the sandbox's outcome (README table): answered, voicemail, no answer, busy,
# and busy-then-answered.
GOOD = [f"+1415555{100 + d:04d}" for d in (0, 1, 2, 3, 4, 5, 6, 7, 60, 70, 80, 90)]
BAD_ROWS = [
    ("12345", "invalid"),
    ("", "missing"),
    ("call me", "unparseable"),
    (GOOD[0], "duplicate"),
]


def contacts_csv(path: Path) -> Path:
    lines = ["phone_number,id,first_name"]
    lines += [f"{phone},ext-{i},Person {i}" for i, phone in enumerate(GOOD)]
    lines += [f"{value},bad-{i},Nobody" for i, (value, _) in enumerate(BAD_ROWS)]
    path.write_text("\n".join(lines) + "\n")
    return path


def log_in(page: Page, service: Service) -> None:
    page.goto(service.url + "/")
    key = page.get_by_label("API key")
    expect(key).to_be_focused()
    # Keyboard only: type, Enter.
    key.fill("not-the-key")
    key.press("Enter")
    expect(page.locator("#login-error")).to_have_text("That API key was refused.")
    key.fill(API_KEY)
    key.press("Enter")
    expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
    expect(page.locator("#live")).to_have_text("Live")


def unlabelled_controls(page: Page) -> list[str]:
    return page.evaluate(
        """() => [...document.querySelectorAll('main input, main select, main textarea')]
            .filter(e => e.type !== 'hidden' && !e.labels.length && !e.getAttribute('aria-label'))
            .map(e => e.outerHTML)"""
    )


def progress(page: Page) -> int:
    return int(page.locator("#campaign-progress").get_attribute("aria-valuenow") or 0)


def test_create_check_start_pause_resume_and_watch_a_campaign_to_the_end(
    page: Page, service: Service, tmp_path: Path
) -> None:
    log_in(page, service)
    page.get_by_role("link", name="New campaign").first.click()
    expect(page.get_by_role("heading", name="New campaign")).to_be_visible()
    assert unlabelled_controls(page) == []
    page.get_by_label("Name", exact=True).fill("Dentist reminders")
    page.get_by_label("Agent id").fill("agent_dentist")
    page.get_by_label("From number").fill("+15005550006")
    page.get_by_label("Contacts (CSV file)").set_input_files(str(contacts_csv(tmp_path / "c.csv")))
    page.get_by_label("Calls at once (concurrency)").fill("2")
    page.get_by_label("Default delay between attempts (seconds)").fill("1")
    page.get_by_label("Delays after Busy, seconds").fill("1, 2")
    # One calling window, every day, all day, so the test runs whatever the hour.
    page.get_by_role("button", name="Add a calling window").click()
    window = page.get_by_role("group", name="Window 1")
    for day in ("Sat", "Sun"):
        window.get_by_label(day).check()
    window.get_by_label("From").fill("00:00")
    window.get_by_label("Until").fill("00:00")

    # The intake report comes before anything is stored.
    page.get_by_role("button", name="Check the file").click()
    report = page.locator("#intake-report")
    expect(report).to_contain_text("Accepted")
    facts = report.locator("dl.facts dd")
    expect(facts).to_have_text([str(len(GOOD) + len(BAD_ROWS)), str(len(GOOD)), str(len(BAD_ROWS))])
    rejected = report.locator("#rejected-rows tbody tr")
    expect(rejected).to_have_count(len(BAD_ROWS))
    first_bad_row = len(GOOD) + 2  # the header is row 1
    for i, (value, reason) in enumerate(BAD_ROWS):
        expect(rejected.nth(i).locator("td")).to_have_text([str(first_bad_row + i), value, reason])
    assert service.api("GET", "/api/v1/dashboard/campaigns").json()["total"] == 0
    screenshot(page, "new-campaign-laptop.png")

    page.get_by_role("button", name="Create campaign with these contacts").click()
    expect(page.locator("#campaign-title")).to_have_text("Dentist reminders")
    campaign_id = page.url.rsplit("/", 1)[1]
    created = service.api("GET", f"/api/v1/campaigns/{campaign_id}").json()
    assert created["concurrency"] == 2 and created["agent_id"] == "agent_dentist"
    assert created["calling_periods"] == [
        {"weekdays": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "24:00"}
    ]
    assert created["retry_rules"]["busy"]["delays"] == [1, 2]
    expect(page.locator("#campaign-status")).to_have_text("Draft")
    expect(page.locator("#campaign-progress")).to_have_attribute(
        "aria-valuetext", f"0 of {len(GOOD)} contacts done"
    )
    # From here on the page is never reloaded: this marker would be gone if it were.
    page.evaluate("window.__sameDocument = true")
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/dashboard/stream" in r.url else None)

    page.get_by_role("button", name="Start Dentist reminders").click()
    expect(page.locator("#campaign-status")).to_have_text("Running")
    expect(page.locator("#campaign-progress")).not_to_have_attribute("aria-valuenow", "0")
    page.get_by_role("button", name="Pause Dentist reminders").click()
    expect(page.locator("#campaign-status")).to_have_text("Paused")
    assert progress(page) < 100, "the campaign finished before it could be paused"
    page.get_by_role("button", name="Resume Dentist reminders").click()
    expect(page.locator("#campaign-status")).to_have_text("Running")
    expect(page.locator("#live-calls tbody tr").first).to_be_visible()
    screenshot(page, "campaign-running-laptop.png")

    expect(page.locator("#campaign-progress")).to_have_attribute(
        "aria-valuenow", "100", timeout=120_000
    )
    expect(page.locator("#campaign-status")).to_have_text("Completed")
    assert page.evaluate("window.__sameDocument") is True
    # Pushed over one stream that stayed open: no reconnects, no polling.
    assert streams == [], f"the page reopened its stream: {streams}"

    expected: dict[str, int] = {}
    for phone in GOOD:
        disposition, _ = predicted(phone)
        expected[disposition] = expected.get(disposition, 0) + 1
    for disposition, n in expected.items():
        expect(
            page.locator(f'#dispositions li[data-disposition="{disposition}"] .bar-value')
        ).to_have_text(re.compile(rf"^{n} \("))
    expect(page.locator("#contacts-summary")).to_have_text(f"{len(GOOD)} contacts match.")
    expect(page.locator("#live-count")).to_have_text("0")

    # Search by a number typed the way people write it, then open that contact's attempts.
    busy_then_answered = GOOD[-1]
    page.get_by_label("Number or external id").fill("(415) 555-0190")
    expect(page.locator("#contact-rows tr")).to_have_count(1)
    page.get_by_label("Disposition", exact=True).select_option("busy")
    expect(page.locator("#contact-rows tr")).to_have_count(0)
    page.get_by_label("Disposition", exact=True).select_option("")
    page.get_by_role("button", name=f"Attempts of {busy_then_answered}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    attempts = dialog.locator("#attempt-list > li")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0).locator(".badge")).to_have_text("Busy")
    expect(attempts.nth(1).locator(".badge")).to_have_text("Answered")
    # The agent's conversation summary of the answered call (the sandbox agent writes one).
    expect(attempts.nth(1).locator(".summary")).to_be_visible()
    # And the transcript the relay kept while the call was live, the callee's turn included.
    transcript = attempts.nth(1).locator("ol.transcript > li")
    expect(transcript).to_have_count(3)
    expect(transcript.nth(1)).to_have_text("Callee: Yes, speaking.")
    expect(dialog.locator("dl.facts").first).to_contain_text("Attempts2")
    screenshot(page, "contact-laptop.png")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.get_by_label("Number or external id").fill("ext-0")
    expect(page.locator("#contact-rows tr")).to_have_count(1)
    page.get_by_label("Number or external id").fill("")
    expect(page.locator("#contact-rows tr")).to_have_count(len(GOOD))

    with page.expect_download() as download:
        page.get_by_role("button", name="Download export (CSV)").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert sorted(r["phone_number"] for r in rows) == sorted(GOOD)

    screenshot(page, "campaign-laptop.png")
    page.set_viewport_size(PHONE)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
    screenshot(page, "campaign-phone.png")
    page.goto(service.url + "/#/")
    expect(page.locator("#campaign-rows tr")).to_have_count(1)
    screenshot(page, "campaigns-phone.png")
    page.set_viewport_size(LAPTOP)
    screenshot(page, "campaigns-laptop.png")


def test_the_page_catches_up_after_the_service_restarts(
    page: Page, service: Service, tmp_path: Path
) -> None:
    body = {
        "name": "Restart",
        "agent_id": "agent_e2e",
        "concurrency": 2,
        "retry_delay_seconds": 1,
        "max_attempts": 3,
    }
    campaign_id = service.api("POST", "/api/v1/campaigns", json=body).json()["id"]
    phones = "\n".join(GOOD[:8])
    service.api(
        "POST",
        f"/api/v1/campaigns/{campaign_id}/contacts",
        data=f"phone_number\n{phones}\n",
        headers={"Content-Type": "text/csv"},
    )
    log_in(page, service)
    page.get_by_role("link", name="Restart").click()
    expect(page.locator("#campaign-status")).to_have_text("Draft")
    page.evaluate("window.__sameDocument = true")
    page.get_by_role("button", name="Start Restart").click()
    expect(page.locator("#campaign-progress")).not_to_have_attribute("aria-valuenow", "0")

    # A new process: the open stream breaks and its ticket means nothing to the new secret.
    service.stop()
    expect(page.locator("#live")).to_have_text("Reconnecting…")
    service.start()
    expect(page.locator("#live")).to_have_text("Live", timeout=60_000)
    expect(page.locator("#campaign-progress")).to_have_attribute(
        "aria-valuenow", "100", timeout=120_000
    )
    expect(page.locator("#campaign-status")).to_have_text("Completed")
    assert page.evaluate("window.__sameDocument") is True


def test_a_read_key_sees_the_campaigns_and_is_offered_no_writes(
    page: Page, service: Service
) -> None:
    """A read-only key logs in and watches, but the page offers no start, pause, cancel or new
    campaign (the API would answer them 403 all the same)."""
    campaign_id = service.api("POST", "/api/v1/campaigns", json={"name": "Watched"}).json()["id"]
    made = service.api("POST", "/api/v1/api-keys", json={"name": "viewer", "scope": "read"})
    page.goto(service.url + "/")
    page.get_by_label("API key").fill(made.json()["key"])
    page.get_by_label("API key").press("Enter")
    expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
    expect(page.locator("#live")).to_have_text("Live")
    expect(page.locator("#campaign-rows tr")).to_have_count(1)
    expect(page.locator("#read-only")).to_have_text("Read-only key")
    expect(page.get_by_role("link", name="New campaign")).to_have_count(0)
    expect(page.locator("#campaign-rows button")).to_have_count(0)
    page.get_by_role("link", name="Watched").click()
    expect(page.locator("#campaign-status")).to_have_text("Draft")
    expect(page.locator("main button[data-action]")).to_have_count(0)
    page.goto(service.url + "/#/new")
    expect(page.get_by_role("heading", name="This API key can only read")).to_be_visible()
    assert service.api("GET", f"/api/v1/campaigns/{campaign_id}").json()["status"] == "draft"


def test_a_campaign_page_shows_its_policy_attention_and_follow_ups(
    page: Page, service: Service
) -> None:
    # Created through the outbound-campaigns API with a caller id every call is refused for: the
    # circuit breaker pauses it with an attention item.
    campaign_id = outbound_campaign(service, UNVERIFIED_FROM)
    wait_until(
        lambda: service.api("GET", f"/api/v1/campaigns/{campaign_id}/attention").json()["items"],
        timeout=60,
        what="the circuit breaker's attention item",
    )
    log_in(page, service)
    page.get_by_role("link", name="panels").click()
    expect(page.locator("#campaign-status")).to_have_text("Paused")
    item = page.locator('#attention-items li[data-open="true"]')
    expect(item).to_have_count(1)
    expect(item.locator("strong")).to_have_text("Circuit breaker (21210)")
    expect(item.locator(".badge")).to_have_text("Open")
    expect(item).to_contain_text(UNVERIFIED_FROM)
    expect(item).to_contain_text("Since ")
    expect(page.locator("#attention-count")).to_have_text("1")
    expect(page.locator("#policy-windows li")).to_have_text(
        ["Mon-Fri 00:00-12:00, 12:00-24:00", "Sat-Sun 00:00-24:00"]
    )
    expect(page.locator("#policy-zone")).to_contain_text("America/Chicago")
    expect(page.locator("#policy-retry li")).to_have_count(3)
    expect(page.locator("#policy-retry")).to_contain_text("15 min later into it")
    expect(page.locator("#no-follow-ups")).to_be_visible()
    expect(item.get_by_role("button", name="Retry (resume the campaign)")).to_be_visible()
    screenshot(page, "campaign-panels.png")

    # Resolved from the page (an outbound campaign's item): marked resolved, the campaign paused.
    item.get_by_label("How it was handled").fill("caller id replaced")
    item.get_by_role("button", name="Resolve").click()
    resolved = page.locator('#attention-items li[data-open="false"]')
    expect(resolved.locator(".badge")).to_have_text("Resolved", timeout=15_000)
    expect(resolved).to_contain_text("caller id replaced")
    expect(page.locator("#attention-count")).to_have_text("0")
    expect(page.locator("#campaign-status")).to_have_text("Paused")
