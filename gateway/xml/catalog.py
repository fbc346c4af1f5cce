"""Schemas from local files only: an XML catalog maps the URLs that WSDLs and XSDs import to copies.

``schemas/catalog.xml`` (OASIS XML Catalogs 1.1; this module reads ``uri``, ``system``,
``rewriteURI`` and ``rewriteSystem`` entries and ``nextCatalog``) says where each imported URL is kept
on this machine. ``load_xsd`` and ``load_wsdl`` build xmlschema's view of a schema with every
``http(s)://`` location redirected through the catalog and everything else that is not a local file
blocked; an import that the catalog does not know stops the load with ``SchemaError`` naming the URL
and the file that imports it. Nothing is fetched from the network, ever.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xmlschema
from lxml import etree
from xmlschema.extras.wsdl import Wsdl11Document

from gateway.resources import schemas_dir
from gateway.xml import safe

__all__ = ["Catalog", "SchemaError", "default_catalog", "load_wsdl", "load_xsd"]

CATALOG_NS = "urn:oasis:names:tc:entity:xmlns:xml:catalog"
_REMOTE = ("http://", "https://", "ftp://")


class SchemaError(Exception):
    """A schema or WSDL cannot be loaded; the message names the file, and the import if one failed."""


@dataclass(frozen=True)
class Catalog:
    """URL -> local file, exactly or by prefix."""

    exact: dict[str, Path] = field(default_factory=dict)
    prefixes: tuple[tuple[str, Path], ...] = ()
    source: Path | None = None

    @classmethod
    def load(cls, path: Path) -> Catalog:
        exact: dict[str, Path] = {}
        prefixes: list[tuple[str, Path]] = []
        cls._read(path.resolve(), exact, prefixes, set())
        prefixes.sort(key=lambda item: -len(item[0]))  # the longest matching prefix wins
        return cls(exact, tuple(prefixes), path.resolve())

    @classmethod
    def _read(cls, path: Path, exact: dict[str, Path], prefixes: list[tuple[str, Path]],
              seen: set[Path]) -> None:
        if path in seen:
            return
        seen.add(path)
        try:
            root = safe.parse(path.read_bytes())
        except (OSError, safe.XmlRefused) as exc:
            raise SchemaError(f"schema catalog {path}: {exc}") from None
        base = path.parent
        for entry in root.iter(f"{{{CATALOG_NS}}}*"):
            kind = etree.QName(entry).localname
            if kind in ("uri", "system"):
                name = entry.get("name") or entry.get("systemId")
                target = entry.get("uri")
                if name and target:
                    exact.setdefault(name, (base / target).resolve())
            elif kind in ("rewriteURI", "rewriteSystem"):
                start = entry.get("uriStartString") or entry.get("systemIdStartString")
                prefix = entry.get("rewritePrefix")
                if start and prefix:
                    prefixes.append((start, (base / prefix).resolve()))
            elif kind == "nextCatalog" and entry.get("catalog"):
                cls._read((base / str(entry.get("catalog"))).resolve(), exact, prefixes, seen)

    def resolve(self, url: str) -> Path | None:
        """The local copy of ``url``, or None when the catalog does not know it."""
        found = self.exact.get(url)
        if found is not None:
            return found
        for start, target in self.prefixes:
            if url.startswith(start):
                return (target / url[len(start):]).resolve()
        return None


@functools.cache
def default_catalog() -> Catalog:
    path = schemas_dir() / "catalog.xml"
    return Catalog.load(path) if path.is_file() else Catalog()


class _Mapper:
    """xmlschema's ``uri_mapper``: remote URLs to local copies; what it cannot map is recorded."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.missing: list[str] = []

    def __call__(self, uri: str) -> str:
        if not uri.lower().startswith(_REMOTE):
            return uri
        local = self.catalog.resolve(uri)
        if local is None:
            if uri not in self.missing:
                self.missing.append(uri)
            return uri  # xmlschema then refuses it: only local files are allowed
        if not local.is_file():
            raise SchemaError(f"the schema catalog maps {uri} to {local}, which does not exist")
        return local.as_uri()


def _options(mapper: _Mapper) -> dict[str, Any]:
    return dict(uri_mapper=mapper, allow="local", defuse="always", timeout=5)


def _check(path: Path, mapper: _Mapper, problems: list[str]) -> None:
    if mapper.missing:
        where = mapper.catalog.source or "the schema catalog"
        raise SchemaError(f"{path}: imports {', '.join(mapper.missing)}, which is not in {where}; add a "
                          "local copy and a catalog entry (the gateway never fetches schemas)")
    if problems:
        raise SchemaError(f"{path}: " + "; ".join(problems[:5]))


def _local(path: Path) -> Path:
    if not path.is_file():
        raise SchemaError(f"no schema at {path}")
    return path.resolve()


def load_xsd(path: Path, catalog: Catalog | None = None) -> Any:
    """An XSD file, its imports and includes resolved offline, compiled by xmlschema."""
    path = _local(path)
    mapper = _Mapper(catalog or default_catalog())
    try:
        with _quiet():
            schema = xmlschema.XMLSchema10(str(path), **_options(mapper))
    except SchemaError:
        raise
    except Exception as exc:
        _check(path, mapper, [])
        raise SchemaError(f"{path}: {_reason(exc)}") from None
    _check(path, mapper, [str(e.message) for e in schema.all_errors])
    return schema


def load_wsdl(path: Path, catalog: Catalog | None = None) -> Any:
    """A WSDL 1.1 file with its types, imports resolved offline (xmlschema's ``Wsdl11Document``).

    Read leniently: real WSDLs carry mistakes that do not matter for translating bodies (the X-Road
    example adapter names a header message that does not exist). Such WSDL-level problems are in
    ``document.errors``; a schema that does not compile is an error."""
    path = _local(path)
    mapper = _Mapper(catalog or default_catalog())
    try:
        with _quiet():
            document = Wsdl11Document(str(path), validation="lax",  # type: ignore[no-untyped-call]
                                      **_options(mapper))
    except SchemaError:
        raise
    except Exception as exc:
        _check(path, mapper, [])
        raise SchemaError(f"{path}: {_reason(exc)}") from None
    problems = [str(e.message) for e in document.schema.maps.iter_schemas()
                for e in getattr(e, "all_errors", [])]
    _check(path, mapper, problems)
    return document


def _reason(exc: Exception) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _quiet:
    """xmlschema warns (and logs) about imports it skipped; the mapper reports those as errors."""

    def __enter__(self) -> None:
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._logger = logging.getLogger("xmlschema")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: Any) -> None:
        self._logger.setLevel(self._level)
        self._warnings.__exit__(*exc)
