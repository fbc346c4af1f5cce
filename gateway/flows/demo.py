"""The demo's joint procedures: ten "3 in 1" flows and five death-group flows, an outage, a refusal.

Nghệ An's and Tuyên Quang's one-stop systems file synthetic joint dossiers (citizens the population
simulator knows, from connectors/synthetic.py) at the gateway's flow services and follow each with
``GET /flows/{id}`` until it finishes. First the residence registry goes down and three dossiers are
filed: their flows wait at the residence step (state ``waiting``) until it is back, then complete.
Then the other twelve, one of them naming the mother "Sai Tên …", which the civil-status registry
refuses (``TEN_KHONG_KHOP``): that flow stops ``rejected`` with the registry's words.
``lienthong demo`` (gateway/demo.py) plays it, checks the outcomes and prints ``flows_table``.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from rich.table import Table

from connectors.synthetic import GIVEN_F, GIVEN_M, MIDDLE_F, MIDDLE_M, Person, people

__all__ = ["BIRTH", "DEATH", "FlowOutcome", "JointDossier", "flows_table", "joint_dossiers",
           "run_joint_procedures"]

BIRTH = "VN/GOV/000.00.00.G22/LIENTHONG/KhaiSinh3Trong1"
DEATH = "VN/GOV/000.00.00.G22/LIENTHONG/KhaiTu"
NGHE_AN, TUYEN_QUANG = "VN/GOV/000.00.00.H41/MOTCUA", "VN/GOV/000.00.00.H60/MOTCUA"
FINISHED = ("completed", "rejected", "failed")
VN = ZoneInfo("Asia/Ho_Chi_Minh")
POLL = 0.3  # seconds between two looks at one flow

Exchange = Callable[..., Awaitable[httpx.Response]]  # (label, token, client, service, body) -> answer
Check = Callable[[str, bool, str], None]


@dataclass(frozen=True)
class Office:
    """A one-stop system and the place its dossiers come from (example commune codes)."""

    client: str
    code: str  # the receiving agency's part of a dossier code
    name: str
    province: str  # two-digit code, as addresses carry it
    commune: str
    hospital: str  # where its children are born: the registry reads the province from it
    street: str


OFFICES = (
    Office(NGHE_AN, "H41.31", "Nghệ An", "40", "16681", "Bệnh viện Sản Nhi Nghệ An", "đường Lê Lợi, TP Vinh"),
    Office(TUYEN_QUANG, "H60.23", "Tuyên Quang", "08", "02212", "Bệnh viện Đa khoa tỉnh Tuyên Quang",
           "đường Bình Thuận, TP Tuyên Quang"),
)


@dataclass(frozen=True)
class JointDossier:
    service: str  # BIRTH or DEATH
    office: Office
    body: dict[str, Any]
    outage: bool = False  # filed while the residence registry is down
    refused: bool = False  # the civil-status registry must refuse it (TEN_KHONG_KHOP)

    @property
    def code(self) -> str:
        return str(self.body["MaHoSo"])

    @property
    def title(self) -> str:
        return "Khai sinh 3 trong 1" if self.service == BIRTH else "Khai tử"


@dataclass
class FlowOutcome:
    dossier: JointDossier
    filed: int = 0  # the filing's HTTP status
    location: str = ""
    seen: list[str] = field(default_factory=list)  # the states it was seen in, in order
    view: dict[str, Any] = field(default_factory=dict)  # the last GET /flows/{id}

    @property
    def state(self) -> str:
        return str(self.view.get("state") or f"not filed ({self.filed})")

    @property
    def elapsed(self) -> float | None:
        """Seconds from filing to the end, by the gateway's clock."""
        started, finished = self.view.get("started"), self.view.get("finished")
        if not started or not finished:
            return None
        return (_instant(finished) - _instant(started)).total_seconds()

    @property
    def reason(self) -> str:
        """What the agency said, for a flow that did not complete."""
        reason = self.view.get("reason") or {}
        answer = reason.get("answer") if isinstance(reason, dict) else None
        if isinstance(answer, dict) and answer.get("MaLoi"):
            return f"{reason.get('step')}: {answer['MaLoi']} — {answer.get('LyDo', '')}"
        return str(reason or "")

    def waited_then_completed(self) -> bool:
        return "waiting" in self.seen and self.state == "completed"


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- the joint dossiers ------------------------------------------------------------------------------

def joint_dossiers(today: date, *, first: int = 101, offset: int = 100, seed: int = 13) -> list[JointDossier]:
    """Ten "3 in 1" dossiers (the sixth refused) and five death-group ones; the first two births
    and the first death are filed during the outage. Everyone named is a citizen the population
    simulator knows (seed 2026, from ``offset`` on), under their own name; dossier codes count from
    ``first``."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, the same each run
    pool = people(1000, seed=2026)[offset:]
    taken: set[str] = set()  # no one plays two parts

    def take(fits: Callable[[Person], bool]) -> Iterator[Person]:
        for person in pool:
            if fits(person) and person.so_dinh_danh not in taken:
                taken.add(person.so_dinh_danh)
                yield person

    mothers = take(lambda p: p.gioi_tinh == "2" and 1982 <= _born(p).year <= 2004)
    fathers = take(lambda p: p.gioi_tinh == "1" and 1978 <= _born(p).year <= 2002)
    # the funeral allowance is refused for an id ending in 9999 (the simulator's magic value)
    elders = take(lambda p: _born(p).year <= 1962 and not p.so_dinh_danh.endswith("9999"))
    adults = take(lambda p: 1965 <= _born(p).year <= 2000)
    seq = iter(range(first, first + 100))

    def code(office: Office) -> str:
        return f"{office.code}-{today:%Y%m%d}-{next(seq):07d}"

    out = []
    for i in range(10):
        office, mother = OFFICES[i % 2], next(mothers)
        father = next(fathers) if i % 4 != 3 else None  # some births name no father
        boy = (i // 2 + i) % 2 == 0  # five boys, five girls, both offices
        child = (f"{(father or mother).ho} {rng.choice(MIDDLE_M if boy else MIDDLE_F)} "
                 f"{rng.choice(GIVEN_M if boy else GIVEN_F)}")
        head = father or next(elders)  # else the household of a grandparent
        address = _address(office, rng)
        body: dict[str, Any] = {
            "MaHoSo": code(office), "NoiDangKy": office.commune,
            "Tre": {"HoTen": child, "GioiTinh": 1 if boy else 2,
                    "NgaySinh": (today - timedelta(days=rng.randrange(2, 40))).isoformat(),
                    "NoiSinh": office.hospital, "DanToc": mother.dan_toc, "QuocTich": "Việt Nam"},
            "Me": _named(mother),
            **({"Cha": _named(father)} if father else {}),
            "NguoiYeuCau": {**_named(mother), "QuanHe": "Mẹ", "SoDienThoai": mother.so_dien_thoai},
            "ThuongTru": {"ChuHo": _named(head), "QuanHeVoiChuHo": "Con" if father else "Cháu",
                          "DiaChi": address},
            "NhanKetQua": {"HinhThuc": "buu_chinh", "DiaChi": address} if i % 3 != 2
            else {"HinhThuc": "truc_tiep"},
        }
        refused = i == 5
        if refused:  # the registry's magic value: this name does not match her personal id
            body["Me"] = {**body["Me"], "HoTen": f"Sai Tên {mother.ho_va_ten}"}
        out.append(JointDossier(BIRTH, office, body, outage=i < 2, refused=refused))
    for i in range(5):
        office, dead, relative = OFFICES[(i + 1) % 2], next(elders), next(adults)
        address = _address(office, rng)
        body = {
            "MaHoSo": code(office), "NoiDangKy": office.commune,
            "NguoiChet": {**_named(dead),
                          "NgayChet": (today - timedelta(days=rng.randrange(1, 10))).isoformat(),
                          "NoiChet": "Tại nhà" if i % 2 else office.hospital},
            "NguoiYeuCau": {**_named(relative), "QuanHe": "Con", "SoDienThoai": relative.so_dien_thoai},
            **({"NguoiNhanMaiTang": _named(relative)} if i < 3 else {}),  # the allowance, for three
            "NhanKetQua": {"HinhThuc": "buu_chinh", "DiaChi": address} if i % 2 == 0
            else {"HinhThuc": "truc_tiep"},
        }
        out.append(JointDossier(DEATH, office, body, outage=i == 0))
    return out


def _born(person: Person) -> date:
    return datetime.strptime(person.ngay_sinh, "%Y%m%d").date()


def _named(person: Person) -> dict[str, str]:
    return {"HoTen": person.ho_va_ten, "SoDinhDanh": person.so_dinh_danh}


def _address(office: Office, rng: random.Random) -> dict[str, str]:
    return {"MaTinh": office.province, "MaXa": office.commune,
            "ChiTiet": f"Số {rng.randrange(1, 200)}, {office.street}"}


# -- filing and following ----------------------------------------------------------------------------

async def run_joint_procedures(http: httpx.AsyncClient, base: str, tokens: Mapping[str, str],
                               residence_sim: str, exchange: Exchange, check: Check, *,
                               dossiers: Sequence[JointDossier] | None = None,
                               patience: float = 120.0) -> list[FlowOutcome]:
    """File and follow the joint dossiers, with the residence registry down while the first
    ones reach it; the checks go to ``check``, the outcomes are returned for ``flows_table``."""
    batch = list(dossiers or joint_dossiers(datetime.now(VN).date()))
    outcomes = [FlowOutcome(d) for d in batch]
    during = [o for o in outcomes if o.dossier.outage]
    after = [o for o in outcomes if not o.dossier.outage]
    codes, started = {o.dossier.code for o in during}, time.monotonic()
    (await http.post(f"{residence_sim}/_sim/mode", json={"mode": "down"})).raise_for_status()
    down = time.monotonic()
    try:
        await asyncio.gather(*(_file(exchange, tokens, o) for o in during))
        # The outage lasts until every flow at the residence step is seen waiting for it, and the
        # gateway has tried again (twice as many calls refused as flows waiting).
        await asyncio.gather(*(_follow(http, base, tokens, o, ("waiting", *FINISHED), patience / 2)
                               for o in during if o.location))
        if any(o.view.get("state") == "waiting" for o in during):
            await _until_refused(http, residence_sim, codes, 2 * len(during), patience / 2)
    finally:
        (await http.post(f"{residence_sim}/_sim/mode", json={"mode": "normal"})).raise_for_status()
        outage = time.monotonic() - down
    await asyncio.gather(*(_file(exchange, tokens, o) for o in after))
    await asyncio.gather(*(_follow(http, base, tokens, o, FINISHED, patience)
                           for o in outcomes if o.location))
    took = time.monotonic() - started
    refusals = await _refused_by(http, residence_sim, codes)
    _judge(outcomes, outage, refusals, took, check)
    return outcomes


async def _file(exchange: Exchange, tokens: Mapping[str, str], o: FlowOutcome) -> None:
    client = o.dossier.office.client
    r = await exchange(o.dossier.service.rsplit("/", 1)[1], tokens[client], client, o.dossier.service,
                       o.dossier.body)
    o.filed, o.location = r.status_code, r.headers.get("location", "") if r.status_code == 202 else ""


async def _follow(http: httpx.AsyncClient, base: str, tokens: Mapping[str, str], o: FlowOutcome,
                  until: tuple[str, ...], patience: float) -> None:
    """Look at the flow until it is in one of ``until`` or ``patience`` runs out."""
    headers = {"Authorization": f"Bearer {tokens[o.dossier.office.client]}"}
    deadline = time.monotonic() + patience
    while True:
        r = await http.get(f"{base}{o.location}", headers=headers)
        if r.status_code == 200:
            o.view = r.json()
            if not o.seen or o.seen[-1] != o.view["state"]:
                o.seen.append(o.view["state"])
            if o.view["state"] in until:
                return
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(POLL)


async def _until_refused(http: httpx.AsyncClient, residence_sim: str, codes: set[str], count: int,
                         patience: float) -> None:
    deadline = time.monotonic() + patience
    while True:
        if await _refused_by(http, residence_sim, codes) >= count or time.monotonic() > deadline:
            return
        await asyncio.sleep(POLL)


async def _refused_by(http: httpx.AsyncClient, residence_sim: str, codes: set[str]) -> int:
    """How many of the outage flows' calls the residence simulator answered 503."""
    items = (await http.get(f"{residence_sim}/_sim/received")).json()["items"]
    return sum(1 for item in items if item.get("status") == 503
               and any(code in (item.get("body") or "") for code in codes))


def _judge(outcomes: list[FlowOutcome], outage: float, refusals: int, took: float, check: Check) -> None:
    births = sum(1 for o in outcomes if o.dossier.service == BIRTH)
    filed = [o for o in outcomes if o.filed == 202 and o.location]
    check(f"{births} '3 in 1' and {len(outcomes) - births} death-group joint dossiers, filed by Nghệ An's "
          "and Tuyên Quang's one-stop systems, are accepted (202, Location: /flows/{id})",
          len(filed) == len(outcomes), f"{len(filed)}/{len(outcomes)} accepted; all followed to the end "
          f"in {took:.1f} s"
          + "".join(f"; {o.dossier.code}: {o.filed}" for o in outcomes if o not in filed))
    during = [o for o in outcomes if o.dossier.outage]
    rode = [o for o in during if o.waited_then_completed()]
    check("the residence registry goes down: the flows at its step wait (waiting), and complete once "
          "it is back", len(rode) == len(during) and refusals > 0,
          f"{len(rode)}/{len(during)} waited, then completed; down {outage:.1f} s, {refusals} calls "
          "answered 503" + "".join(f"; {o.dossier.code}: {' -> '.join(o.seen) or 'not seen'}"
                                  for o in during if o not in rode))
    meant = [o for o in outcomes if not o.dossier.refused]
    done = [o for o in meant if o.state == "completed"]
    times = [t for o in done if (t := o.elapsed) is not None]
    check(f"{len(meant)} flows complete across the civil-status registry, residence, social insurance "
          "and the post", len(done) == len(meant),
          f"{len(done)}/{len(meant)} completed"
          + (f", median {statistics.median(times):.1f} s, slowest {max(times):.1f} s" if times else "")
          + "".join(f"; {o.dossier.code}: {o.state} {o.reason}".rstrip() for o in meant if o not in done))
    for o in (o for o in outcomes if o.dossier.refused):
        answer = (o.view.get("reason") or {}).get("answer") or {}
        check("a mother's name that does not match her personal id: the civil-status registry refuses "
              "it and the flow stops rejected with the registry's reason",
              o.state == "rejected" and answer.get("MaLoi") == "TEN_KHONG_KHOP",
              f"{o.dossier.code}: {o.state}; {o.reason or 'no reason given'}")


# -- the report ----------------------------------------------------------------------------------

MARK = {"done": "✔", "skipped": "–", "rejected": "rejected", "failed": "failed"}


def flows_table(outcomes: Sequence[FlowOutcome]) -> Table:
    """Each flow's outcome and elapsed time, as ``GET /flows/{id}`` showed it."""
    table = Table(title="Joint procedures (thủ tục liên thông): each flow's outcome and elapsed time "
                  "(GET /flows/{id})")
    for col in ("dossier", "procedure", "one-stop", "outcome", "elapsed", "steps", "note"):
        table.add_column(col, justify="right" if col == "elapsed" else "left")
    for o in outcomes:
        style = {"completed": "green", "rejected": "yellow"}.get(o.state, "red")
        steps = " ".join(f"{s['step']} {MARK.get(s['state'], '·')}" for s in o.view.get("steps", []))
        note = o.reason if o.state != "completed" else ""
        if o.dossier.outage:
            note = f"residence down: {' -> '.join(o.seen)}"
        elapsed = o.elapsed
        table.add_row(o.dossier.code, o.dossier.title, o.dossier.office.name,
                      f"[{style}]{o.state}[/{style}]", "-" if elapsed is None else f"{elapsed:.1f} s",
                      steps, note)
    return table
