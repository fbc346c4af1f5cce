"""The wheel carries the code, the bundled schemas and policies, and the entry points."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_wheel_install_finds_schemas_policies_and_plugins(tmp_path: Path) -> None:
    """A wheel install (not the checkout) has schemas/, policies/ and the connector entry points."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("lienthong-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "gateway/_bundled/schemas/population/dancu.wsdl" in names
    assert "gateway/_bundled/policies/demo.yaml" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[lienthong.connectors]" in text and "population = connectors.population.connector:create" in text
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    probe = ("import gateway.resources as r, sys; "
             "print(r.schemas_dir()); print(r.policies_dir()); "
             "assert (r.schemas_dir() / 'population' / 'dancu.wsdl').is_file(); "
             "assert (r.policies_dir() / 'demo.yaml').is_file()")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, check=True, capture_output=True,
                         text=True, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert str(target) in out.stdout and "_bundled" in out.stdout
