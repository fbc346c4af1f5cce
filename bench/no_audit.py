"""The gateway with its audit's steps taken out: the baseline that ``audit_bench.py --only added``
measures the audit's added CPU against. Not a configuration the product has: the gateway itself
never answers an exchange it did not audit.

    python -m bench.no_audit serve --config FILE        # same arguments as ``python -m gateway``

What is taken out is all the audit does for an exchange: the record (the digests of the response
and of the upstream's request and response), the kept bodies, the leaf, its hash and its commit.
The request's digest stays (the audit's SHA-256 of the body; the answer's ``X-Road-Request-Hash``
is computed apart, whatever the audit does). Patched in this process only, so run the gateway with
one worker (the bench does).
"""

from __future__ import annotations

from typing import Any

from gateway import exchange
from gateway.audit import log


def _nothing(*_: Any) -> None:
    return None


async def _no_append(self: Any, record: Any, *, bodies: Any = None) -> int:
    return 0


def main() -> None:
    # module functions since the pipeline's reshaping (issue 18): patching ``Pipeline.record``, as
    # this did, took nothing out, and the record was still built for the stand-in ``append``
    exchange.record = _nothing  # type: ignore[assignment]
    exchange.kept_bodies = _nothing  # type: ignore[assignment]
    log.AuditLog.append = _no_append  # type: ignore[method-assign]
    from gateway.cli import main as gateway_main

    gateway_main()


if __name__ == "__main__":
    main()
