"""The gateway's key files (generation, modes, loading wrong or missing ones) and the YAML reader
whose every error names the file and the line."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from joserfc.jwk import ECKey, OKPKey

from gateway import keys
from gateway.oauth.keyring import Keyring, key_created, prune
from gateway.yamlfile import FileError, line_of, load


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- signing keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "kind", "curve"),
                         [("ES256", ECKey, "P-256"), ("EdDSA", OKPKey, "Ed25519")])
def test_new_signing_key_is_a_private_jwk_readable_by_its_owner_only(
        tmp_path: Path, algorithm: str, kind: type, curve: str) -> None:
    kid = keys.new_signing_key(tmp_path, algorithm)
    path = tmp_path / "oauth" / f"{kid}.jwk"
    assert mode_of(path) == 0o600
    jwk = json.loads(path.read_text())
    assert (jwk["kid"], jwk["alg"], jwk["use"], jwk["crv"]) == (kid, algorithm, "sig", curve)
    assert "d" in jwk
    (loaded,) = keys.load_signing_keys(tmp_path).keys
    assert isinstance(loaded, kind)
    assert loaded.kid == kid


def test_kids_sort_by_creation_so_the_newest_signs(tmp_path: Path) -> None:
    made = [keys.new_signing_key(tmp_path) for _ in range(3)]
    assert made == sorted(made)
    assert len(set(made)) == 3
    assert [k.kid for k in keys.load_signing_keys(tmp_path).keys] == made
    assert abs(key_created(made[0]) - key_created(made[2])) < 5


def test_no_signing_key_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run 'lienthong init' or 'lienthong keys rotate'"):
        keys.load_signing_keys(tmp_path)


def test_a_broken_key_file_stops_loading(tmp_path: Path) -> None:
    """One unreadable key file and no key set is loaded: never a signer chosen from what is left."""
    keys.new_signing_key(tmp_path)
    (tmp_path / "oauth" / "zzz.jwk").write_text("{not json")
    with pytest.raises(keys.KeyFileError, match="JSONDecodeError"):
        keys.load_signing_keys(tmp_path)
    (tmp_path / "oauth" / "zzz.jwk").write_text(json.dumps({"kty": "EC", "crv": "P-256"}))
    with pytest.raises(keys.KeyFileError, match="'x' is required"):
        keys.load_signing_keys(tmp_path)


def test_a_broken_key_file_is_named(tmp_path: Path) -> None:
    keys.new_signing_key(tmp_path)
    (tmp_path / "oauth" / "zzz.jwk").write_text(json.dumps({"kty": "EC", "crv": "P-256"}))
    with pytest.raises(ValueError, match=r"zzz\.jwk"):
        keys.load_signing_keys(tmp_path)


def test_files_other_than_jwk_are_not_keys(tmp_path: Path) -> None:
    kid = keys.new_signing_key(tmp_path)
    (tmp_path / "oauth" / "README.txt").write_text("not a key")
    (tmp_path / "oauth" / "backup.jwk.bak").write_text("{}")
    assert [k.kid for k in keys.load_signing_keys(tmp_path).keys] == [kid]


def test_a_key_file_is_never_overwritten(tmp_path: Path) -> None:
    keys.new_subject_key(tmp_path)
    before = (tmp_path / keys.SUBJECT_KEY).read_bytes()
    with pytest.raises(FileExistsError):
        keys.new_subject_key(tmp_path)
    assert (tmp_path / keys.SUBJECT_KEY).read_bytes() == before


def test_keyring_poll_sees_rotations_and_ignores_an_emptied_folder(tmp_path: Path) -> None:
    first = keys.new_signing_key(tmp_path)
    ring = Keyring(tmp_path)
    assert ring.poll() is None
    second = keys.new_signing_key(tmp_path)
    fresh = ring.poll()
    assert fresh is not None and [k.kid for k in fresh.keys] == [first, second]
    assert [k["kid"] for k in ring.jwks()] == [first, second]
    for path in (tmp_path / "oauth").glob("*.jwk"):
        path.unlink()
    assert ring.poll() is None  # an empty folder never replaces the keys in use
    assert [k.kid for k in ring.keys.keys] == [first, second]


def test_prune_keeps_a_key_until_its_successor_has_signed_long_enough(tmp_path: Path) -> None:
    old, new = keys.new_signing_key(tmp_path), keys.new_signing_key(tmp_path)
    born = key_created(new)
    assert prune(tmp_path, keep_for=330, now=born + 300) == []
    assert prune(tmp_path, keep_for=330, now=born + 331) == [old]
    assert [k.kid for k in keys.load_signing_keys(tmp_path).keys] == [new]


def test_key_created_falls_back_to_the_file_time(tmp_path: Path) -> None:
    path = tmp_path / "handmade.jwk"
    path.write_text("{}")
    assert key_created("handmade", path) == path.stat().st_mtime
    assert key_created("handmade", tmp_path / "gone.jwk") == 0.0
    assert key_created("20260609T083000.000001-abcd") == 1780993800.0


# -- audit keys ------------------------------------------------------------------------------------


def test_ensure_keys_makes_only_what_is_missing(tmp_path: Path) -> None:
    keys.ensure_keys(tmp_path, "EdDSA")
    made = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert {keys.SUBJECT_KEY, keys.CHECKPOINT_KEY, keys.BODY_KEY} <= set(made)
    assert all(mode_of(p) == 0o600 for p in tmp_path.rglob("*") if p.is_file())
    (tmp_path / keys.BODY_KEY).unlink()
    keys.ensure_keys(tmp_path)
    again = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert again[keys.BODY_KEY] != made[keys.BODY_KEY] and len(again[keys.BODY_KEY]) == 32
    assert {k: v for k, v in again.items() if k != keys.BODY_KEY} == {
        k: v for k, v in made.items() if k != keys.BODY_KEY}
    (signer,) = keys.load_signing_keys(tmp_path).keys
    assert isinstance(signer, OKPKey)


def test_missing_audit_keys_say_where_and_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"no audit subject key at {tmp_path / keys.SUBJECT_KEY}; "
                                                "run 'lienthong init'"):
        keys.load_subject_key(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"no audit key at {tmp_path / keys.CHECKPOINT_KEY}"):
        keys.load_audit_key(tmp_path, keys.CHECKPOINT_KEY)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_an_audit_key_of_the_wrong_size_is_refused(tmp_path: Path, size: int) -> None:
    (tmp_path / keys.BODY_KEY).write_bytes(b"k" * size)
    with pytest.raises(ValueError, match=f"must hold 32 bytes, it holds {size}"):
        keys.load_audit_key(tmp_path, keys.BODY_KEY)


def test_audit_keys_round_trip(tmp_path: Path) -> None:
    keys.ensure_keys(tmp_path)
    assert len(keys.load_audit_key(tmp_path, keys.CHECKPOINT_KEY)) == 32
    assert len(keys.load_subject_key(tmp_path)) == 32


# -- client keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "kty"), [("EdDSA", "OKP"), ("ES256", "EC")])
def test_client_key_file_and_its_public_jwks(tmp_path: Path, algorithm: str, kty: str) -> None:
    path = keys.new_client_key(tmp_path, "VN:GOV:000.00.00.G22:DVCQG", algorithm)
    assert path.name == "VN_GOV_000.00.00.G22_DVCQG.jwk"
    assert mode_of(path) == 0o600
    jwks = keys.public_jwks_of(path)
    (key,) = jwks["keys"]
    assert key["kty"] == kty and "d" not in key
    assert re.fullmatch(r"vn:gov:000\.00\.00\.g22:dvcqg-[0-9a-f]{8}", key["kid"])
    assert key["kid"] == json.loads(path.read_text())["kid"]


def test_a_new_client_key_replaces_the_old_file(tmp_path: Path) -> None:
    first = keys.new_client_key(tmp_path, "VN/GOV/000.00.00.G22/DVCQG")
    old = first.read_text()
    second = keys.new_client_key(tmp_path, "VN/GOV/000.00.00.G22/DVCQG")
    assert first == second
    assert second.read_text() != old
    assert json.loads(second.read_text())["kid"].startswith("dvcqg-")


# -- YAML with lines -------------------------------------------------------------------------------


def write(tmp_path: Path, text: str | bytes, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_every_key_and_item_has_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "instance: VN\n\nmembers:\n  - id: VN/GOV/000.00.00.H60\n    name: Tuyên Quang\n"
                           "  - id: VN/GOV/000.00.00.H41\n    routing:\n      agencies: [H41]\n")
    data, lines = load(path)
    assert data["members"][1]["routing"] == {"agencies": ["H41"]}
    assert lines[("instance",)] == 1
    assert lines[("members",)] == 4  # a key holding a block: the line its value starts on
    assert lines[("members", 0)] == 4
    assert lines[("members", 1, "routing", "agencies")] == 8
    assert lines[("members", 0, "name")] == 5
    assert line_of(lines, ("members", 1, "routing", "agencies", 0, "no-such")) == 8
    assert line_of(lines, ("nowhere", "deep")) == 1  # the document's own line
    assert line_of({}, ("x",)) is None


def test_an_empty_file_is_none_without_lines(tmp_path: Path) -> None:
    assert load(write(tmp_path, "")) == (None, {})
    assert load(write(tmp_path, "# only a comment\n")) == (None, {})


@pytest.mark.parametrize(("text", "line", "says"), [
    ("a: 1\nb:\n\t- 2\n", 3, "found character '\\t' that cannot start any token"),
    ("a: [1, 2\nb: 3\n", 2, "expected ',' or ']'"),
    ("a: 1\n  b: 2\n", 2, "mapping values are not allowed here"),
    ("a: *missing\n", 1, "found undefined alias 'missing'"),
])
def test_invalid_yaml_names_file_and_line(tmp_path: Path, text: str, line: int, says: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FileError) as caught:
        load(path)
    error = caught.value
    assert (error.path, error.line) == (str(path), line)
    assert error.message.startswith("not valid YAML: ") and says in error.message
    assert str(error).startswith(f"{path}:{line}: not valid YAML")


def test_an_unreadable_path_is_a_file_error_without_line(tmp_path: Path) -> None:
    with pytest.raises(FileError) as caught:
        load(tmp_path / "absent.yaml")
    assert caught.value.line is None
    assert str(caught.value) == f"{tmp_path / 'absent.yaml'}: cannot read: No such file or directory"
    with pytest.raises(FileError, match="cannot read: Is a directory"):
        load(tmp_path)


def test_file_error_without_a_line_names_the_file_only() -> None:
    assert str(FileError("p.yaml", None, "bad")) == "p.yaml: bad"
    assert str(FileError(Path("p.yaml"), 0, "bad")) == "p.yaml: bad"
    assert str(FileError("p.yaml", 7, "bad")) == "p.yaml:7: bad"


def test_aliases_and_non_string_keys_are_read(tmp_path: Path) -> None:
    data, lines = load(write(tmp_path, "base: &b {x: 1}\nuse: *b\n10: ten\ntrue: yes\n"))
    assert data == {"base": {"x": 1}, "use": {"x": 1}, 10: "ten", True: True}
    assert (lines[(10,)], lines[("use", "x")]) == (3, 1)  # an alias's keys stand where the anchor does


def test_a_file_that_is_not_utf8_is_a_file_error(tmp_path: Path) -> None:
    path = write(tmp_path, b"instance: VN\nname: \xff\xfe\n")
    with pytest.raises(FileError) as caught:
        load(path)
    assert caught.value.path == str(path)


def test_a_control_character_is_a_file_error_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "a: 1\nb: \x07\n")
    with pytest.raises(FileError) as caught:
        load(path)
    assert caught.value.line == 2


@pytest.mark.parametrize("text", ["a: 1\nb: !!python/object:os.system x\n", "a: 1\nb: !!int ten\n"])
def test_a_value_that_cannot_be_constructed_is_a_file_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FileError) as caught:
        load(path)
    assert (caught.value.path, caught.value.line) == (str(path), 2)
