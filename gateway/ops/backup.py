"""A consistent backup of a gateway, and its restore.

A backup is a folder::

    manifest.json        what is here: the sha256 of every file, the database's kind, the audit
                         log's size and root at the moment of the snapshot, when and by which version
    database.sqlite      SQLite: a copy made with SQLite's online backup API (consistent, while the
                         gateway runs)
    document-bodies.sqlite  SQLite: the same of the sent packages' bytes kept beside the database
                         (gateway/documents/bodies.py), copied after it, so that every document the
                         copy holds finds its bytes; absent when the gateway has none
    database.pgdump      PostgreSQL: pg_dump's custom format, dumped in the very snapshot in which the
                         audit head was read
    keys/…               the keys folder (token signing keys, audit keys, the seal): mode 0600
    config/config.yaml   the configuration file, for reference
    config/witness.txt   the configured witness file, when there is one

Restoring checks every digest before anything is written, refuses a target database that holds data
(unless forced), loads the database and the keys, then runs the checks of ``lienthong audit verify``
and compares the audit head with the manifest's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from gateway import __version__
from gateway.config import Config
from gateway.documents.bodies import JOURNAL_MODE, bodies_path
from gateway.storage.db import is_sqlite, sqlite_file

__all__ = ["BackupError", "BackupResult", "Manifest", "RestoreResult", "backup", "restore"]

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite"
BODIES_FILE = "document-bodies.sqlite"
PG_FILE = "database.pgdump"
Say = Callable[[str], None]


class BackupError(RuntimeError):
    """Backup or restore cannot go on; the message says why and what to do."""


@dataclass
class Manifest:
    database: str  # "sqlite" or "postgresql"
    audit_size: int
    audit_root: str  # base64, as `lienthong audit verify` prints it
    files: dict[str, str]  # relative path -> sha256 hex
    created: str = ""
    version: str = __version__

    def as_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "created": self.created, "version": self.version,
                "database": self.database, "audit": {"size": self.audit_size, "root": self.audit_root},
                "files": self.files}

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") != FORMAT:
                raise BackupError(f"{path}: backup format {doc.get('format')!r}, this gateway reads "
                                  f"format {FORMAT}; restore it with the version that wrote it "
                                  f"({doc.get('version')})")
            return cls(database=doc["database"], audit_size=int(doc["audit"]["size"]),
                       audit_root=doc["audit"]["root"], files=dict(doc["files"]),
                       created=doc.get("created", ""), version=doc.get("version", ""))
        except FileNotFoundError:
            raise BackupError(f"{folder} is not a backup: it has no {MANIFEST} (give the folder "
                              "'lienthong backup --to' wrote)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"{path} is not a readable manifest ({type(exc).__name__}: {exc}); "
                              "use another backup") from None


@dataclass
class BackupResult:
    folder: Path
    manifest: Manifest
    seconds: float


@dataclass
class RestoreResult:
    manifest: Manifest
    leaves: int
    root: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    checkpoints: int = 0
    seconds: float = 0.0


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _b64(data: bytes | None) -> str:
    return base64.b64encode(data or b"").decode("ascii")


# -- PostgreSQL tools ------------------------------------------------------------------------------

def pg_tool(name: str, pg_bin: Path | None = None) -> str:
    """The path of ``pg_dump`` or ``pg_restore``: in ``pg_bin``, on PATH, or the newest installed."""
    if pg_bin is not None:
        found = pg_bin / name
        if not found.is_file():
            raise BackupError(f"no {name} in {pg_bin} (--pg-bin): give the folder holding "
                              "PostgreSQL's client programs")
        return str(found)
    on_path = shutil.which(name)
    if on_path:
        return on_path
    installed = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                       key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if installed:
        return str(installed[-1])
    raise BackupError(f"{name} not found: install PostgreSQL's client programs (the same major "
                      "version as the server, or newer) or pass --pg-bin DIR")


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection string without the password, and the environment carrying it (a password
    on a command line is visible to every user of the host)."""
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise BackupError(f"{what} failed (exit {done.returncode}):\n{tail}")


# -- backup ----------------------------------------------------------------------------------------

def backup(config: Config, config_path: Path, target: Path, *, say: Say = lambda _: None,
           pg_bin: Path | None = None) -> BackupResult:
    """Write a backup of the configured gateway into ``target`` (new, or an empty folder)."""
    started = time.perf_counter()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} exists and is not an empty folder: back up into a new folder "
                          "(one per backup, e.g. named by date)")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    url = config.database_url
    if is_sqlite(url):
        kind, size, root = "sqlite", *_backup_sqlite(url, target / SQLITE_FILE, say)
        bodies = bodies_path(_sqlite_file(url))
        if bodies.is_file():  # after the database: bytes are stored before the rows naming them
            say(f"document bodies: SQLite {bodies} -> {BODIES_FILE} (online backup)")
            _copy_sqlite(bodies, target / BODIES_FILE).close()
    else:
        kind, size, root = "postgresql", *_backup_pg(url, target / PG_FILE, say, pg_bin)
    keys_dir = config.path(config.keys_dir)
    copied = _copy_tree(keys_dir, target / "keys") if keys_dir.is_dir() else 0
    say(f"keys: {copied} file(s) from {keys_dir}")
    (target / "config").mkdir(mode=0o700)
    shutil.copyfile(config_path, target / "config" / "config.yaml")
    witness = _witness(config)
    if witness is not None and witness.is_file():
        shutil.copyfile(witness, target / "config" / "witness.txt")
        say(f"witness file: {witness}")
    files = {str(p.relative_to(target)): sha256_file(p)
             for p in sorted(target.rglob("*")) if p.is_file()}
    manifest = Manifest(database=kind, audit_size=size, audit_root=_b64(root), files=files,
                        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    (target / MANIFEST).write_text(json.dumps(manifest.as_json(), indent=2) + "\n")
    return BackupResult(target, manifest, time.perf_counter() - started)


def _witness(config: Config) -> Path | None:
    return config.state_path(config.audit.witness_file) if config.audit.witness_file else None


def _sqlite_file(url: str) -> Path:
    database = sqlite_file(url)
    if database is None:
        raise BackupError(f"{url}: only a SQLite database in a file can be backed up or restored")
    return Path(database)


def _backup_sqlite(url: str, out: Path, say: Say) -> tuple[int, bytes | None]:
    source_path = _sqlite_file(url)
    if not source_path.is_file():
        raise BackupError(f"no database at {source_path}: check 'database' in the configuration")
    say(f"database: SQLite {source_path} -> {out.name} (online backup)")
    copy = _copy_sqlite(source_path, out, say)
    try:
        return _head_sqlite(copy)
    finally:
        copy.close()


def _copy_sqlite(source_path: Path, out: Path, say: Say = lambda _: None) -> sqlite3.Connection:
    """A consistent copy of a SQLite file in use, self-contained (no WAL); the copy's connection."""
    source = sqlite3.connect(source_path, timeout=30)
    copy = sqlite3.connect(out)
    try:
        pages, page_size = (source.execute(f"PRAGMA {name}").fetchone()[0]
                            for name in ("page_count", "page_size"))
        say(f"  copying {pages:,} pages ({pages * page_size / 1e6:,.1f} MB)")
        # In one step: one read transaction, so a consistent copy while the gateway writes on (WAL
        # lets it); copied in steps, every write by the gateway would restart the copy.
        source.backup(copy, pages=-1)
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    except sqlite3.Error as exc:
        copy.close()
        raise BackupError(f"SQLite backup of {source_path} failed: {exc}") from None
    finally:
        source.close()
        out.chmod(0o600)
    return copy


def _head_sqlite(conn: sqlite3.Connection) -> tuple[int, bytes | None]:
    try:
        row = conn.execute("SELECT size, root FROM audit_head WHERE id = 1").fetchone()
    except sqlite3.Error:
        raise BackupError("the database has no audit log (audit_head): is this a Liên Thông "
                          "database, started or migrated at least once?") from None
    return (int(row[0]), row[1]) if row else (0, None)


def _backup_pg(url: str, out: Path, say: Say, pg_bin: Path | None) -> tuple[int, bytes | None]:
    dump = pg_tool("pg_dump", pg_bin)
    conninfo, env = _libpq(make_url(url))
    engine = sa.create_engine(url)
    say(f"database: PostgreSQL {make_url(url).render_as_string()} -> {out.name} (pg_dump, custom "
        "format)")
    try:
        with engine.connect() as raw:
            conn = raw.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():  # one snapshot, taken by its first statement, for all that follows
                snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
                row = conn.exec_driver_sql("SELECT size, root FROM audit_head WHERE id = 1").first()
                # pg_dump reads the exported snapshot: the dump holds exactly the head read here
                _run([dump, "--format=custom", "--no-owner", "--no-privileges",
                      f"--snapshot={snapshot}", f"--file={out}", f"--dbname={conninfo}"], env,
                     "pg_dump")
    except sa.exc.SQLAlchemyError as exc:
        raise BackupError(f"cannot read the database: {str(exc).splitlines()[0]} (is it migrated, "
                          "and reachable with the configured URL?)") from None
    finally:
        engine.dispose()
    out.chmod(0o600)
    return (int(row[0]), bytes(row[1]) if row[1] is not None else None) if row else (0, None)


def _copy_tree(source: Path, dest: Path) -> int:
    count = 0
    for path in sorted(source.rglob("*")):
        if path.is_file():
            to = dest / path.relative_to(source)
            to.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copyfile(path, to)
            to.chmod(0o600)
            count += 1
    return count


# -- restore ---------------------------------------------------------------------------------------

def check_digests(folder: Path, manifest: Manifest) -> None:
    """Every file the manifest names is there and unchanged, else BackupError naming the first."""
    for name, expected in manifest.files.items():
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BackupError(f"the manifest names {name!r}, outside the backup: refusing it")
        if not path.is_file():
            raise BackupError(f"{path} is missing from the backup; use a complete backup")
        found = sha256_file(path)
        if found != expected:
            raise BackupError(f"{path} was changed since the backup (sha256 {found}, the manifest "
                              f"says {expected}); nothing was restored: use another backup")


def restore(config: Config, source: Path, *, force: bool = False, say: Say = lambda _: None,
            pg_bin: Path | None = None) -> RestoreResult:
    """Restore the backup in ``source`` into the configured database and keys folder, then verify
    the audit log as ``lienthong audit verify`` does."""
    started = time.perf_counter()
    manifest = Manifest.read(source)
    say(f"backup of {manifest.created or 'an unknown date'} (version {manifest.version}): "
        f"{manifest.database}, audit log of {manifest.audit_size:,} leaves")
    check_digests(source, manifest)
    say(f"digests: {len(manifest.files)} file(s) match the manifest")
    url = config.database_url
    kind = "sqlite" if is_sqlite(url) else "postgresql"
    if kind != manifest.database:
        raise BackupError(f"the backup holds a {manifest.database} database but the configuration "
                          f"names a {kind} one ({make_url(url).render_as_string()}); restore into a "
                          f"{manifest.database} database")
    keys_dir = config.path(config.keys_dir)
    _check_keys(source / "keys", keys_dir, force)
    holding = _tables_with_rows(url)
    if holding and not force:
        raise BackupError(f"the target database is not empty ({', '.join(holding[:5])} hold rows); "
                          "restore into a new database, or pass --force to replace its contents")
    if kind == "sqlite":
        _restore_sqlite(source / SQLITE_FILE, _sqlite_file(url), say)
        if (source / BODIES_FILE).is_file():
            _restore_sqlite(source / BODIES_FILE, bodies_path(_sqlite_file(url)), say, JOURNAL_MODE)
    else:
        _restore_pg(source / PG_FILE, url, say, pg_bin)
    restored = _copy_tree(source / "keys", keys_dir) if (source / "keys").is_dir() else 0
    say(f"keys: {restored} file(s) into {keys_dir}")
    witness = _witness(config)
    if witness is not None and not witness.exists() and (source / "config" / "witness.txt").is_file():
        witness.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / "config" / "witness.txt", witness)
        say(f"witness file: {witness}")
    return _verify(config, manifest, started, say)


def _check_keys(backed_up: Path, keys_dir: Path, force: bool) -> None:
    if force or not backed_up.is_dir():
        return
    for path in sorted(backed_up.rglob("*")):
        present = keys_dir / path.relative_to(backed_up)
        if path.is_file() and present.is_file() and present.read_bytes() != path.read_bytes():
            raise BackupError(f"{present} exists and differs from the backed-up key: restore into "
                              "an empty keys folder, or pass --force to replace the keys")


def _tables_with_rows(url: str) -> list[str]:
    """The tables of the target database that hold rows: a new or freshly migrated database has
    none (alembic's version row and the empty audit head aside)."""
    if is_sqlite(url) and not _sqlite_file(url).exists():
        return []
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = [n for n in sa.inspect(conn).get_table_names() if n != "alembic_version"]
            found = [n for n in names
                     if conn.execute(sa.select(sa.literal(1)).select_from(sa.table(n)).limit(1)).first()
                     is not None]
            if "audit_head" in found and not conn.execute(
                    sa.text("SELECT size FROM audit_head WHERE id = 1")).scalar():
                found.remove("audit_head")
            return found
    except sa.exc.SQLAlchemyError as exc:
        raise BackupError(f"cannot open the target database: {str(exc).splitlines()[0]}; create it "
                          "(empty) and check 'database' in the configuration") from None
    finally:
        engine.dispose()


def _restore_sqlite(copy: Path, target: Path, say: Say, journal: str = "WAL") -> None:
    say(f"database: {copy.name} -> SQLite {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    dest = sqlite3.connect(target, timeout=30)
    try:
        # a new file takes the copy's page size (the bodies file's is 64 KiB) before a WAL fixes it
        dest.execute(f"PRAGMA page_size={int(source.execute('PRAGMA page_size').fetchone()[0])}")
        dest.execute(f"PRAGMA journal_mode={journal}")  # as the gateway opens it
        source.backup(dest, pages=4096)
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite restore into {target} failed: {exc} (is a gateway running on "
                          "it? stop it first)") from None
    finally:
        source.close()
        dest.close()


def _restore_pg(dump_file: Path, url: str, say: Say, pg_bin: Path | None) -> None:
    tool = pg_tool("pg_restore", pg_bin)
    conninfo, env = _libpq(make_url(url))
    say(f"database: {dump_file.name} -> PostgreSQL {make_url(url).render_as_string()} (pg_restore)")
    _run([tool, "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
          "--exit-on-error", f"--dbname={conninfo}", str(dump_file)], env, "pg_restore")


def _verify(config: Config, manifest: Manifest, started: float, say: Say) -> RestoreResult:
    from gateway.audit.service import AuditKeysMissing, AuditService

    say("audit: verifying the restored log (the checks of 'lienthong audit verify')")
    try:
        service = AuditService.open(config)
    except AuditKeysMissing as exc:
        raise BackupError(f"restored, but the audit log cannot be verified: {exc}") from None
    try:
        report = service.verify(service.witness_notes())
    finally:
        service.log.engine.dispose()
    root = _b64(report.root)
    problems = [str(p) for p in report.problems]
    if report.leaves != manifest.audit_size or (manifest.audit_size and root != manifest.audit_root):
        problems.insert(0, f"the restored audit log has {report.leaves} leaves, root {root}; the "
                           f"manifest says {manifest.audit_size} leaves, root {manifest.audit_root}")
    return RestoreResult(manifest=manifest, leaves=report.leaves, root=root,
                         ok=report.ok and not problems, problems=problems,
                         checkpoints=report.checkpoints, seconds=time.perf_counter() - started)
