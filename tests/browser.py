"""Headless Chromium (Debian's package, installed by `make browser`) for the page tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from PIL import Image

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=5000",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError(
            "chromium is not installed; run `make browser` (apt-get install chromium)"
        )
    return found


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    command = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def rendered_dom(url: str, tmp: Path) -> str:
    """The page's DOM after its scripts ran."""
    return _run(["--dump-dom", url], tmp / "profile-dom").stdout


def screenshot(url: str, tmp: Path, size: str = "1200,800") -> Path:
    out = tmp / "shot.png"
    _run([f"--window-size={size}", f"--screenshot={out}", url], tmp / "profile-shot")
    return out


def ink(png: Path) -> tuple[float, int]:
    """(share of pixels that are not the background colour, number of distinct colours)."""
    image = Image.open(png).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 24) or []
    background = max(colours)[0] if colours else 0
    total = image.width * image.height
    return 1 - background / total, len(colours)
