"""The console's languages: Vietnamese by default, English one click away.

Every word a page shows comes from one catalogue (``catalogue.MESSAGES``: key -> text per language);
templates call ``_("key")`` and may pass named values (``_("entry.title", idx=3)``). A key missing from
the catalogue shows as the key itself, and a test fails on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.console.catalogue import MESSAGES

__all__ = ["DEFAULT", "LANGUAGES", "Translate", "choose", "translator"]

LANGUAGES = ("vi", "en")
DEFAULT = "vi"

Translate = Callable[..., str]


def choose(value: str | None) -> str:
    return value if value in LANGUAGES else DEFAULT


def translator(lang: str) -> Translate:
    lang = choose(lang)

    def translate(key: str, **values: Any) -> str:
        texts = MESSAGES.get(key)
        text = texts.get(lang) or texts.get(DEFAULT) if texts else None
        if text is None:
            return key
        return text.format(**values) if values else text

    return translate
