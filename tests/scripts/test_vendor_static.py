"""The vendoring script names packages, never a registry's address: ``npm pack`` fetches each one
with whatever registry npm is configured for, and the pinned sha512 is checked here as before."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "vendor_static.py"
URL = re.compile(r"[a-z][a-z0-9+.-]*://|\bwww\.|registry\.", re.IGNORECASE)


def _script():
    spec = importlib.util.spec_from_file_location("vendor_static", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_list_names_no_url():
    for package, version, integrity, _licence, destination, files in _script().PACKAGES:
        fields = [package, version, destination, *files, *files.values()]
        assert not [f for f in fields if URL.search(f)], package
        assert integrity.startswith("sha512-")


def test_the_script_holds_no_address_and_fetches_with_npm_pack():
    text = SCRIPT.read_text()
    assert URL.findall(text) == []
    assert '"npm", "pack"' in text


def test_versions_md_lists_every_pinned_package():
    versions = (ROOT / "static" / "vendor" / "VERSIONS.md").read_text()
    assert URL.findall(versions) == []
    for package, version, _integrity, licence, destination, _files in _script().PACKAGES:
        assert f"| {package} | {version} | {licence} | `{destination}/` |" in versions
        assert (ROOT / destination).is_dir()
