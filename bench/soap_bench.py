"""The population verify call through the generic ``soap`` connector, beside the zeep-based one and nginx.

    .venv/bin/python bench/soap_bench.py [bench/run.py's options]

Adds to bench/run.py's targets (same machinery, same table, same audit check) a gateway whose
``XacThucThongTinCongDan`` service uses the ``soap`` connector (schema-driven translation: lxml and
the compiled codec of ``gateway.xml``) instead of ``population`` (zeep), and the SOAP face passing the
same call through. By default it runs only the targets that compare them::

    soap-upstream  soap-nginx  gateway-population  gateway-soap  gateway-soap-face
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.append(str(Path(__file__).resolve().parent.parent))

import yaml

from bench import run, targets
from bench.targets import (
    ISSUE,
    TARGETS,
    USER_ID,
    VERIFY_CLIENT,
    VERIFY_SERVICE,
    Bench,
    HttpRequest,
    Target,
    free_port,
    population_available,
    verify_envelope,
)

VARIANT = "soap"
DEFAULT = ["soap-upstream", "soap-nginx", "gateway-population", "gateway-soap", "gateway-soap-face"]


def _soap_gateway(bench: Bench) -> None:
    """A gateway like the others, its verify service on the generic SOAP connector."""
    if VARIANT not in bench.gateways:
        gw = bench._gateway_config(VARIANT, free_port())
        data = yaml.safe_load(gw.config.read_text(encoding="utf-8"))
        data["upstream"] = {"transport": "aiohttp"}
        for service in data["services"]:
            if service["id"] == VERIFY_SERVICE:
                service.update(connector="soap", schema="population/dancu.wsdl",
                               options={"fill": {"MaYeuCau": "id", "MaCanBo": "userId"}})
        gw.config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        bench.gateways[VARIANT] = gw
    bench.start_gateway(VARIANT)


def _verify_json(b: Bench) -> HttpRequest:
    return targets._verify_gateway(VARIANT)(b)


def _verify_soap_face(b: Bench) -> HttpRequest:
    envelope, action = verify_envelope(b.citizen)
    gw = b.gateways[VARIANT]
    return HttpRequest(f"{gw.base}/soap/{VERIFY_SERVICE}", body=envelope, headers={
        "Content-Type": "text/xml; charset=utf-8", "SOAPAction": action,
        "Authorization": f"Bearer {gw.tokens[VERIFY_CLIENT]}", "X-Road-UserId": USER_ID,
        "X-Road-Issue": ISSUE})


def register() -> None:
    if "gateway:soap" in targets.SERVICES:
        return
    targets.SERVICES["gateway:soap"] = _soap_gateway
    TARGETS.append(Target(
        "gateway-soap", "gateway JSON->SOAP (soap)", "population", "gateway",
        ("sim:population", "gateway:soap"), _verify_json, gateway=VARIANT, own="gateway:soap",
        check=targets._verified, available=population_available,
        description="the same call through the generic soap connector (compiled schema codec, lxml)"))
    TARGETS.append(Target(
        "gateway-soap-face", "gateway SOAP face", "population", "gateway",
        ("sim:population", "gateway:soap"), _verify_soap_face, gateway=VARIANT, own="gateway:soap",
        check=targets._verified, available=population_available,
        description="POST /soap/{service}: the SOAP envelope validated by schema, passed through, audited"))


def main(argv: list[str] | None = None) -> int:
    register()
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--only" not in argv and "--list" not in argv:
        argv += ["--only", *DEFAULT]
    return run.main(argv)


if __name__ == "__main__":
    sys.exit(main())
