"""The version lives in one place (lensarray/__init__.py); files that must repeat it agree."""

import re
from pathlib import Path

import lensarray

ROOT = Path(__file__).resolve().parents[1]


def test_citation_and_pyproject_take_the_package_version():
    cff = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^version: (\S+)$", cff, re.M).group(1) == lensarray.__version__
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'version = {attr = "lensarray.__version__"}' in pyproject
    assert not re.search(r'^version = "', pyproject, re.M)  # no second copy


def test_typed_marker_and_licence_ship():
    assert (ROOT / "lensarray" / "py.typed").is_file()
    assert "BSD 3-Clause" in (ROOT / "LICENSE").read_text()
