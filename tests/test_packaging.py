"""Packaging: only the plain-PyTorch library is installed; the Lightning systems run from the repository root."""

import configparser
from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parents[1]


def test_only_interpedit_is_installed():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    include = [p.strip() for p in config["options.packages.find"]["include"].split(",")]
    packages = find_packages(where=str(REPO), include=include)
    assert "interpedit" in packages and "interpedit.metrics" in packages
    # Generic top-level names (callbacks, datamodules, ...) must never land in site-packages.
    assert all(p == "interpedit" or p.startswith("interpedit.") for p in packages), packages


def test_library_imports_nothing_from_lightning():
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "interpedit").rglob("*.py")
        if any(line.lstrip().startswith(("import lightning", "from lightning")) for line in path.read_text().splitlines())
    ]
    assert offenders == []
