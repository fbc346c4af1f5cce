"""Official documents in the console, in Chromium: the documents page (list, filters, KPIs per organ)
and one document's trace, in Vietnamese and English, for an auditor and an operator; the signer's and
the staff's names never shown.

The documents are stored in the site's database through the document store, as the gateway stores
them (tests/test_document_stats.py ``seed``), dated January 2025 so that a window isolates them from
whatever else the site holds; every recipient pulls, so nothing of them enters the delivery queue the
other browser tests look at."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from connectors.dms import data
from gateway.storage.db import create_engine
from tests.browser.scenario import Played
from tests.browser.test_console_browser import PHONE, new_page, sign_in
from tests.conftest import Stack
from tests.test_document_stats import G12, H41, H60, Doc, Recipient, at, seed

pytestmark = pytest.mark.slow

WINDOW = {"from": "2025-01-01", "to": "2025-02-01"}
DOCS = [
    # done by Nghệ An on time, refused by the ministry: refused
    Doc(901, H60, at(2025, 1, 6, 9), date(2025, 1, 10),
        {H41: Recipient(confirmed=True, statuses=[("03", at(2025, 1, 6, 10)), ("06", at(2025, 1, 9, 15))]),
         G12: Recipient(confirmed=True, statuses=[("02", at(2025, 1, 7, 8))])}),
    # done by Nghệ An after its due date: electronic, answered late
    Doc(902, H60, at(2025, 1, 13, 9), date(2025, 1, 14),
        {H41: Recipient(confirmed=True, statuses=[("06", at(2025, 1, 20, 9))])}),
]


@pytest.fixture(scope="module")
def stored(site: tuple[Stack, Played]) -> dict[int, str]:
    engine = create_engine(site[0].database)
    try:
        return seed(engine, DOCS, push={})
    finally:
        engine.dispose()


def test_documents_page_and_trace_in_both_languages(browser: Any, site: tuple[Stack, Played],
                                                    stored: dict[int, str], shots: Path) -> None:
    """An auditor filters the list (organ, outcome, dates), reads the KPIs per organ, opens a
    document's trace: its facts, each recipient's answer, every message in order; then in English."""
    page = new_page(browser, site[0])
    sign_in(page, "kiemtoan")
    page.click("nav.nav a[href$='/documents']")
    assert page.locator("h1").inner_text() == "Văn bản điện tử liên thông"
    page.fill("input[name=from]", WINDOW["from"])
    page.fill("input[name=to]", WINDOW["to"])
    page.click("#document-filters button[type=submit]")
    rows = page.locator("#document-table tbody tr")
    assert sorted(rows.nth(i).get_attribute("data-document") for i in range(rows.count())) == sorted(
        stored.values())
    sender = page.locator("#document-kpi-table tr[data-organ='000.00.00.H60'][data-period='2025-01']")
    assert sender.locator("td.sent").inner_text() == "2"
    assert sender.locator("td.electronic").inner_text() == "1"
    assert sender.locator("td.electronic-share").inner_text() == "50.0 %"
    nghean = page.locator("#document-kpi-table tr[data-organ='000.00.00.H41'][data-period='2025-01']")
    assert nghean.locator("td.received").inner_text() == "2"
    assert nghean.locator("td.on-time").inner_text() == "1"
    assert nghean.locator("td.on-time-share").inner_text() == "50.0 %"
    assert page.locator("#document-kpi-table tr[data-total='2025-01'] td.sent").inner_text() == "2"
    # the refused one only, as seen by the ministry
    page.fill("input[name=organ]", G12)
    page.select_option("select[name=outcome]", "refused")
    page.click("#document-filters button[type=submit]")
    row = page.locator(f"tr[data-document='{stored[901]}']")
    assert rows.count() == 1 and "bị từ chối" in row.inner_text()
    assert data.SUBJECTS[901 % len(data.SUBJECTS)] in row.inner_text()
    organs = page.locator("#document-kpi-table tbody tr[data-organ]")
    assert [organs.nth(i).get_attribute("data-organ") for i in range(organs.count())] == [G12]
    page.screenshot(path=str(shots / "documents.png"), full_page=True)
    row.locator("a").click()
    page.wait_for_url(f"**/console/documents/{stored[901]}")
    assert page.locator("h1").inner_text() == "Văn bản 901/UBND-VP"
    assert page.locator("#document-due").inner_text() == "2025-01-10"
    assert page.locator("#document-outcome").inner_text() == "bị từ chối"
    answers = page.locator("#document-copies")
    assert "06 · đã hoàn thành" in answers.locator(f"tr[data-organ='{H41}']").inner_text()
    assert "đúng hạn" in answers.locator(f"tr[data-organ='{H41}']").inner_text()
    assert answers.locator(f"tr[data-organ='{G12}']").get_attribute("data-outcome") == "refused"
    trace = page.locator("#document-trace li")
    assert [(trace.nth(i).get_attribute("data-kind"), trace.nth(i).get_attribute("data-code"))
            for i in range(trace.count())] == [("package", ""), ("package", ""), ("status", "03"),
                                               ("status", "06"), ("status", "02")]
    assert "đã xác nhận" in trace.nth(0).inner_text()
    content = page.content()
    for name in [full for _, full in data.SIGNERS] + ["Trần Thị Lan"]:  # signers and status staff
        assert name not in content
    page.screenshot(path=str(shots / "document-trace.png"), full_page=True)
    page.click("#lang-en")
    page.wait_for_url(f"**/console/documents/{stored[901]}")
    assert page.locator("h1").inner_text() == "Document 901/UBND-VP"
    text = page.locator("main").inner_text()
    assert "Trace (in the order accepted)" in text and "pulled by the recipient" in text
    page.goto("/console/documents?" + "&".join(f"{k}={v}" for k, v in WINDOW.items()))
    assert page.locator("h1").inner_text() == "Official documents exchanged"
    assert "Electronic share" in page.locator("#document-kpi-table").inner_text()
    page.click("#lang-vi")
    page.context.close()


def test_operator_sees_documents_unknown_is_404_bad_date_400(browser: Any, site: tuple[Stack, Played],
                                                              stored: dict[int, str]) -> None:
    """Operators may see the documents too; an unknown document is a 404 page, a bad date a 400."""
    page = new_page(browser, site[0])
    sign_in(page, "vanhanh")
    page.goto(f"/console/documents/{stored[902]}")
    assert page.locator("#document-outcome").inner_text() == "mọi nơi nhận đã nhận"
    assert "muộn" in page.locator(f"#document-copies tr[data-organ='{H41}']").inner_text()
    answer = page.goto("/console/documents/khong-co")
    assert answer is not None and answer.status == 404
    answer = page.goto("/console/documents?from=2025-13-01")
    assert answer is not None and answer.status == 400
    page.context.close()


def test_documents_pages_fit_a_phone(browser: Any, site: tuple[Stack, Played],
                                     stored: dict[int, str]) -> None:
    """On a phone-sized screen neither page needs sideways scrolling (tables scroll in their card)."""
    page = new_page(browser, site[0], PHONE)
    sign_in(page, "kiemtoan")
    for path in ("/console/documents?from=2025-01-01&to=2025-02-01", f"/console/documents/{stored[901]}"):
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 1, (path, width)
    page.context.close()
