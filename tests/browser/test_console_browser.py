"""The console in a real browser: sign in, search the log for one citizen, see an entry verified by the
browser's own Web Crypto, see a tampered entry refused, switch language, retry a dead delivery, be
refused a page the role does not allow, and fit a phone's screen. Screenshots of the main pages are
saved on the way (see conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.storage.db import create_engine
from gateway.storage.tables import audit_leaves
from tests.browser.conftest import PASSWORD
from tests.browser.scenario import CITIZEN, Played
from tests.conftest import Stack

pytestmark = pytest.mark.slow

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def new_page(browser: Any, stack: Stack, viewport: dict[str, int] = DESKTOP) -> Any:
    context = browser.new_context(viewport=viewport, locale="vi-VN", base_url=stack.base,
                                  device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def sign_in(page: Any, username: str) -> None:
    page.goto("/console/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url("**/console/overview")


@pytest.fixture
def auditor(browser: Any, site: tuple[Stack, Played]) -> Iterator[Any]:
    page = new_page(browser, site[0])
    sign_in(page, "kiemtoan")
    yield page
    page.context.close()


def test_sign_in_page_is_vietnamese_and_refuses_a_wrong_password(browser: Any, site: tuple[Stack, Played],
                                                                 shots: Path) -> None:
    """The sign-in page speaks Vietnamese; a wrong password is refused with a message."""
    page = new_page(browser, site[0])
    page.goto("/console/overview")
    assert "/console/login" in page.url
    assert page.locator("h1").inner_text() == "Đăng nhập"
    page.screenshot(path=str(shots / "login.png"))
    page.fill("input[name=username]", "kiemtoan")
    page.fill("input[name=password]", "sai-mat-khau-roi")
    page.click("button[type=submit].primary")
    assert "không đúng" in page.locator("#login-error").inner_text()
    page.context.close()


def test_overview_shows_charts(auditor: Any, shots: Path) -> None:
    """The overview draws traffic, services and KPI charts from the traffic played."""
    auditor.goto("/console/overview?window=24h&period=month")
    assert int(auditor.locator("#stat-calls").inner_text()) > 20
    assert auditor.locator("svg.chart").count() >= 6
    auditor.screenshot(path=str(shots / "overview.png"), full_page=True)


def test_find_one_citizen_and_see_each_entry_verified(auditor: Any, site: tuple[Stack, Played],
                                                      shots: Path) -> None:
    """Search by personal id: the URL carries only the hash; every one of the citizen's exchanges opens
    as verified by the browser (Ed25519 signature included when this Chromium has it)."""
    played = site[1]
    auditor.goto("/console/log")
    auditor.fill("input[name=personal_id]", CITIZEN)
    auditor.fill("input[name=service]", "VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan")
    auditor.click("#search-button")
    auditor.wait_for_selector("#log-table")
    assert CITIZEN not in auditor.url and "subject=" in auditor.url
    links = auditor.locator("a.entry-link")
    assert links.count() == len(played.citizen_exchanges) == 2
    auditor.screenshot(path=str(shots / "log-search.png"), full_page=True)
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    for n, href in enumerate(hrefs):
        auditor.goto(href)
        verdict = auditor.locator("#verdict")
        auditor.wait_for_selector("#verdict:not([data-state=checking])")
        steps = auditor.locator("#verify-steps").inner_text()
        assert verdict.get_attribute("data-state") == "verified", steps
        assert verdict.inner_text().strip().endswith("Đã xác minh")
        assert "XacThucThongTinCongDan" in auditor.locator("#entry-fields").inner_text()
        if n == 0:
            assert verdict.get_attribute("data-signature") in ("browser", "server")
            auditor.screenshot(path=str(shots / "entry-verified.png"), full_page=True)


def test_a_tampered_entry_is_not_verified(auditor: Any, site: tuple[Stack, Played], shots: Path) -> None:
    """Someone changes a refused call's record in the database (guard trigger dropped): the page
    shows what the database now says, and the browser refuses it."""
    stack, played = site
    engine = create_engine(stack.database)
    with engine.connect() as conn:
        idx, leaf = conn.execute(sa.select(audit_leaves.c.idx, audit_leaves.c.leaf)
                                 .where(audit_leaves.c.exchange_id == played.refused[-1])).one()
    auditor.goto(f"/console/log/{idx}")  # a checkpoint covering it is signed first
    auditor.wait_for_selector("#verdict[data-state=verified]")
    forged = bytes(leaf).replace(b'"outcome":"refused"', b'"outcome":"ok"').replace(b'"status":403',
                                                                                 b'"status":200')
    assert forged != bytes(leaf)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_leaves_no_update")
        conn.execute(sa.update(audit_leaves).where(audit_leaves.c.idx == idx).values(leaf=forged))
    engine.dispose()
    auditor.goto(f"/console/log/{idx}")
    auditor.wait_for_selector("#verdict:not([data-state=checking])")
    assert auditor.locator("#verdict").get_attribute("data-state") == "not-verified"
    assert "KHÔNG" in auditor.locator("#verdict").inner_text()
    auditor.screenshot(path=str(shots / "entry-tampered.png"), full_page=True)


def test_switch_language(auditor: Any, shots: Path) -> None:
    """One click to English on any page, and back."""
    auditor.goto("/console/checkpoints")
    assert auditor.locator("h1").inner_text() == "Điểm kiểm tra đã ký"
    auditor.click("#lang-en")
    auditor.wait_for_url("**/console/checkpoints")
    assert auditor.locator("h1").inner_text() == "Signed checkpoints"
    assert auditor.locator("html").get_attribute("lang") == "en"
    options = auditor.locator("select[name=first] option")
    if options.count() >= 2:
        auditor.select_option("select[name=first]", index=options.count() // 2)
        auditor.click("#consistency-form button[type=submit]")
        assert auditor.locator("#consistency-verdict").get_attribute("data-state") == "verified"
    auditor.screenshot(path=str(shots / "checkpoints-en.png"), full_page=True)
    auditor.click("#lang-vi")
    assert auditor.locator("h1").inner_text() == "Điểm kiểm tra đã ký"


def test_subject_report_is_printable(auditor: Any, site: tuple[Stack, Played], shots: Path) -> None:
    """Who accessed this person's data: a report listing the citizen's accesses."""
    auditor.goto("/console/subjects")
    auditor.fill("input[name=personal_id]", CITIZEN)
    auditor.click("#subject-form button[type=submit]")
    auditor.wait_for_selector("#subject-report")
    assert CITIZEN not in auditor.url
    assert int(auditor.locator("#access-count").inner_text()) >= len(site[1].citizen_exchanges)
    auditor.screenshot(path=str(shots / "subject-report.png"), full_page=True)
    auditor.emulate_media(media="print")
    assert not auditor.locator("header.top").is_visible()
    auditor.emulate_media(media="screen")


def test_auditor_is_refused_the_deliveries_page(auditor: Any, shots: Path) -> None:
    """An auditor who opens the operators' page is refused, in words."""
    response = auditor.goto("/console/deliveries")
    assert response.status == 403
    assert auditor.locator("#error-title").inner_text() == "Lỗi 403"
    assert auditor.locator("nav.nav a[href$='/deliveries']").count() == 0
    auditor.screenshot(path=str(shots / "refused.png"))


def test_operator_retries_a_dead_delivery(browser: Any, site: tuple[Stack, Played], shots: Path) -> None:
    """The operator sees the dead letter, retries it, and it goes out (the portal answers again)."""
    stack, played = site
    page = new_page(browser, stack)
    sign_in(page, "vanhanh")
    assert page.locator("nav.nav a[href$='/log']").count() == 0  # operators do not read the log
    page.goto("/console/deliveries?state=dead")
    row = page.locator(f"tr[data-delivery='{played.dead_delivery}']")
    assert row.count() == 1
    page.screenshot(path=str(shots / "deliveries-dead.png"), full_page=True)
    row.locator("button.retry").click()
    assert page.locator("#done").is_visible()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page.goto("/console/deliveries?state=delivered")
        if page.locator(f"tr[data-delivery='{played.dead_delivery}']").count():
            break
        time.sleep(0.3)
    else:
        raise AssertionError("the retried delivery was not delivered in time")
    page.goto("/console/catalog")
    # the eight members of the demo catalog (the joint procedures' agencies among them); former Hà
    # Giang is listed too, marked so
    assert page.locator("section.member").count() == 8
    heading = page.locator("section.member h2", has_text="VN/GOV/000.00.00.H22")
    assert heading.count() == 1 and heading.locator("span.badge").count() == 1
    page.screenshot(path=str(shots / "catalog.png"), full_page=True)
    page.context.close()


def test_pages_fit_a_phone(browser: Any, site: tuple[Stack, Played], shots: Path) -> None:
    """On a phone-sized screen no page needs sideways scrolling, and the menu folds away."""
    page = new_page(browser, site[0], PHONE)
    sign_in(page, "kiemtoan")
    for path in ("/console/overview", "/console/log", "/console/log/0", "/console/checkpoints"):
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 1, (path, width)
    assert not page.locator("nav.nav").is_visible()
    page.click("label.menu-button")
    assert page.locator("nav.nav").is_visible()
    page.goto("/console/overview")
    page.screenshot(path=str(shots / "phone-overview.png"), full_page=True)
    page.context.close()
