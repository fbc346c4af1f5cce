"""The joint procedures in the console, in Chromium: the flows page (list, filters, KPIs) and one
flow's timeline, in Vietnamese and English, for an auditor and an operator; no personal id shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.scenario import Played
from tests.browser.test_console_browser import new_page, sign_in
from tests.conftest import Stack
from tests.test_flows_e2e import BIRTH, birth, file, follow

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def filed(site: tuple[Stack, Played]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A 3-in-1 flow run to its end through the site's gateway: its dossier and its record."""
    dossier = birth()
    r = file(site[0], BIRTH, dossier)
    assert r.status_code == 202, r.text
    flow = follow(site[0], r.headers["location"])
    assert flow["state"] == "completed", flow
    return dossier, flow


def test_flows_page_and_timeline_in_both_languages(browser: Any, site: tuple[Stack, Played],
                                                   filed: tuple[dict[str, Any], dict[str, Any]],
                                                   shots: Path) -> None:
    """An auditor finds the flow in the list (filtered by kind and state), sees the KPI table, opens
    its timeline, switches to English; the child's personal id shows only its last 3 digits and no
    one's id from the joint dossier appears."""
    dossier, flow = filed
    page = new_page(browser, site[0])
    sign_in(page, "kiemtoan")
    page.click("nav.nav a[href$='/flows']")
    assert page.locator("h1").inner_text() == "Thủ tục liên thông"
    page.select_option("select[name=flow]", "khai-sinh-3-trong-1")
    page.select_option("select[name=state]", "completed")
    page.click("#flow-filters button[type=submit]")
    row = page.locator(f"tr[data-flow='{flow['id']}']")
    assert dossier["MaHoSo"] in row.inner_text() and "hoàn thành" in row.inner_text()
    kpi = page.locator("#flow-kpi-table tr[data-kind='khai-sinh-3-trong-1'] td.completed").inner_text()
    assert int(kpi) >= 1
    assert page.locator("#flow-agency-table tr[data-agency='VN/GOV/000.00.00.G15']").count() == 1
    page.screenshot(path=str(shots / "flows.png"), full_page=True)
    row.locator("a").click()
    page.wait_for_url(f"**/console/flows/{flow['id']}")
    assert page.locator("#flow-steps li.step").count() == 4
    child = next(s for s in flow["steps"] if s["step"] == "khai_sinh")["result"]["SoDinhDanh"]
    text = page.locator("main").inner_text()
    assert child not in text and f"•••••••••{child[-3:]}" in text
    for person in (dossier["Me"]["SoDinhDanh"], dossier["ThuongTru"]["ChuHo"]["SoDinhDanh"]):
        assert person not in page.content()
    assert "Kết quả của cơ quan" in text
    # what the flow told the portal and the filing system: seven notifications, in order
    told = page.locator("#flow-notifications tbody tr")
    assert [told.nth(i).get_attribute("data-notify") for i in range(told.count())] == [
        "dong_bo", "tien_do", "tien_do", "tien_do", "tien_do", "ket_thuc", "ket_qua"]
    assert "xong bước · khai_sinh" in page.locator("#flow-notifications").inner_text()
    page.screenshot(path=str(shots / "flow-timeline.png"), full_page=True)
    page.click("#lang-en")
    page.wait_for_url(f"**/console/flows/{flow['id']}")
    assert page.locator("h1").inner_text() == f"Joint procedure {dossier['MaHoSo']}"
    assert "The agency's answer" in page.locator("main").inner_text()
    assert "Notifications sent" in page.locator("main").inner_text()
    assert child not in page.content()
    page.goto("/console/flows")
    assert page.locator("h1").inner_text() == "Joint procedures"
    assert "Share within the legal limit" in page.locator("#flow-kpi-table").inner_text()
    page.click("#lang-vi")
    page.context.close()


def test_operator_sees_flows_and_an_unknown_flow_is_404(browser: Any, site: tuple[Stack, Played],
                                                        filed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Operators may see the flows too; a flow id that does not exist is a 404 page."""
    page = new_page(browser, site[0])
    sign_in(page, "vanhanh")
    page.goto(f"/console/flows/{filed[1]['id']}")
    assert page.locator("#flow-state").inner_text().startswith("hoàn thành")
    answer = page.goto("/console/flows/khong-co")
    assert answer is not None and answer.status == 404
    page.context.close()
