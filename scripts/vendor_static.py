#!/usr/bin/env python3
"""Vendor the browser libraries the UI uses (and axe-core for the browser tests) from npm.

Each package is pinned by version and by its sha512 integrity; ``npm pack`` (npm's own client,
with whatever registry npm is configured for) fetches each tarball, and the chosen files and
the package's licence are copied into the repository, and ``static/vendor/VERSIONS.md`` lists
what is there. Run ``make vendor`` after changing a pin; commit what it writes. Nothing here
runs at build or test time: a clean clone needs no network for the UI.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (package, version, sha512 integrity, licence, destination, {file in the tarball: name here});
# a pattern (``*``) names a folder here, which gets every matching file under its own name.
PACKAGES = [
    (
        "markdown-it",
        "15.0.3",
        "sha512-+Az7Ojz3iRGu8KYMvJ6xVhvrxP3eE+vEtJX75Ow88XBpcQNV/0lGX5ZynIIBftREo4DC2jsveAMDaeltmm8QvQ==",
        "MIT",
        "static/vendor/markdown-it",
        {"dist/browser/markdown-it.esm.min.mjs": "markdown-it.min.js", "LICENSE": "LICENSE"},
    ),
    (
        "dompurify",
        "3.4.18",
        "sha512-ofe3wI/uNm68HInABYFJYqQxRw1EaKAjNdrFVKqjUY+UZurvNd2L/HuQe097s/4RivWiZyP6tT7aoT8atjfhwg==",
        "Apache-2.0 OR MPL-2.0",
        "static/vendor/dompurify",
        {"dist/purify.es.mjs": "purify.js", "LICENSE": "LICENSE"},
    ),
    (
        "@highlightjs/cdn-assets",
        "11.12.0",
        "sha512-KvOKXODaiFmId9xaq3xc5xCL66wVLUuOngDbO9B/kewbFTqdGbn2nJxNhN3H5R1cgDTVj6R8vH0zgiNDEGjpDw==",
        "BSD-3-Clause",
        "static/vendor/highlight.js",
        {"es/highlight.min.js": "highlight.min.js", "LICENSE": "LICENSE"},
    ),
    (
        "katex",
        "0.19.1",
        "sha512-jG8uKntjSEcm2EpQOh0XturpPuuC9r3Sq5HLHdsFdWZT27E672SF19QEi+of0/YeOy15lDgRhKvr5614uRrEfA==",
        "MIT",
        "static/vendor/katex",
        {
            "dist/katex.mjs": "katex.js",
            "dist/katex.min.css": "katex.min.css",
            "dist/fonts/*.woff2": "fonts/",
            "LICENSE": "LICENSE",
        },
    ),
    (
        "axe-core",
        "4.14.1",
        "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==",
        "MPL-2.0",
        "tests/browser/vendor/axe-core",
        {"axe.min.js": "axe.min.js", "LICENSE": "LICENSE"},
    ),
]


def fetch(package: str, version: str, integrity: str) -> bytes:
    """The package's tarball as published, by ``npm pack`` into a scratch folder; checked here too."""
    with tempfile.TemporaryDirectory(prefix="vendor-") as scratch:
        packed = subprocess.run(
            ["npm", "pack", f"{package}@{version}", "--json", "--pack-destination", scratch],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if packed.returncode != 0:
            sys.exit(f"{package}@{version}: npm pack failed: {packed.stderr.strip()}")
        filename = json.loads(packed.stdout)[0]["filename"]
        data = (Path(scratch) / filename).read_bytes()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != integrity:
        sys.exit(f"{package}@{version}: integrity mismatch ({digest} != {integrity})")
    return data


# Every browser the UI supports reads WOFF2: the older formats' fallbacks are not shipped.
FONT_FALLBACK = re.compile(rb',url\([^)]*\.(?:woff|ttf)\) format\("(?:woff|truetype)"\)')


def members(tar: tarfile.TarFile, source: str, name: str) -> list[tuple[str, str]]:
    """(file in the tarball, name here) for ``source``, a path or a pattern whose ``name`` is a folder."""
    if "*" not in source:
        return [(source, name)]
    found = sorted(m.name.removeprefix("package/") for m in tar.getmembers() if m.isfile())
    return [(path, name + path.rsplit("/", 1)[-1]) for path in found if fnmatch.fnmatchcase(path, source)]


def shown(source: str, name: str) -> str:
    return name + source.rsplit("/", 1)[-1] if "*" in source else name


def main() -> None:
    rows = []
    for package, version, integrity, licence, destination, files in PACKAGES:
        data = fetch(package, version, integrity)
        target = ROOT / destination
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for pattern, folder in files.items():
                matched = members(tar, pattern, folder)
                if not matched:
                    sys.exit(f"{package}@{version}: no {pattern} in the tarball")
                for source, name in matched:
                    member = tar.extractfile(f"package/{source}")
                    if member is None:
                        sys.exit(f"{package}@{version}: no {source} in the tarball")
                    text = member.read()
                    if name.endswith(".js"):  # no source maps are shipped: drop the dangling reference
                        text = b"\n".join(line for line in text.split(b"\n") if not line.startswith(b"//# sourceMappingURL="))
                    if name.endswith(".css"):
                        text = FONT_FALLBACK.sub(b"", text)
                    (target / name).parent.mkdir(parents=True, exist_ok=True)
                    (target / name).write_bytes(text)
        listed = ", ".join(f"`{shown(source, name)}`" for source, name in files.items())
        rows.append(f"| {package} | {version} | {licence} | `{destination}/` | {listed} |")
        print(f"{package}@{version} -> {destination}")
    versions = ROOT / "static/vendor/VERSIONS.md"
    versions.write_text(
        "# Vendored browser libraries\n\n"
        "Written by `scripts/vendor_static.py` (`make vendor`) from npm (`npm pack`), each tarball checked"
        " against its pinned sha512 integrity. Do not edit these files by hand.\n\n"
        "| package | version | licence | where | files |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    main()
