"""Screenshot of the running UI after one prediction (for the README), with headless Chromium.

Given a running stack (router + ``streamlit run ui/app.py``)::

    python -m ui.screenshot --url http://127.0.0.1:8501 --out docs/ui-screenshot.png

Uses the PyPI ``playwright`` package to drive an installed Chromium (Debian's
``/usr/bin/chromium`` by default); it never downloads a browser. A Streamlit page arrives
over a WebSocket after the HTML, so the script waits for the form, clicks "Predict quality"
and waits for the answer before capturing.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
FORM_READY_TEXT = "Predict quality"
ANSWER_TEXT = "Predicted quality:"


@dataclass(frozen=True)
class Capture:
    """What the page showed after the click."""

    path: Path
    answer: str
    """The headline of the answer, e.g. ``Predicted quality: 5 / 10``."""
    page_text: str


def capture(
    url: str,
    out: Path,
    *,
    compare: bool = False,
    executable: str = CHROMIUM,
    timeout_seconds: float = 60.0,
    width: int = 1400,
    height: int = 1100,
) -> Capture:
    """Open the UI, click Predict (and Compare when asked), wait for the answer, save a PNG."""
    from playwright.sync_api import sync_playwright

    timeout_ms = timeout_seconds * 1000
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url, timeout=timeout_ms)
            button = page.get_by_role("button", name=FORM_READY_TEXT)
            button.wait_for(timeout=timeout_ms)
            button.click()
            answer = page.get_by_text(ANSWER_TEXT)
            answer.wait_for(timeout=timeout_ms)
            # the metrics arrive after the headline; the round trip is the last of them
            page.get_by_text(re.compile(r"^\d+\.\d ms$")).wait_for(timeout=timeout_ms)
            if compare:
                page.get_by_role("button", name="Compare all models").click()
                page.get_by_text("All models on this wine").wait_for(timeout=timeout_ms)
                page.wait_for_timeout(1500)  # let the chart render
            headline = answer.inner_text()
            page.screenshot(path=str(out), full_page=True)
            text = page.locator("body").inner_text()
        finally:
            browser.close()
    logger.info("saved %s (%s)", out, headline)
    return Capture(out, headline, text)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m ui.screenshot --url ... --out ...``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8501", help="URL of the running UI")
    parser.add_argument("--out", type=Path, default=Path("docs/ui-screenshot.png"), help="PNG to write")
    parser.add_argument("--compare", action="store_true", help="also click Compare all models")
    parser.add_argument("--chromium", default=CHROMIUM, help="Chromium executable")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each step")
    parser.add_argument("--width", type=int, default=1400, help="viewport width in pixels")
    parser.add_argument(
        "--height", type=int, default=1100, help="viewport height (Streamlit scrolls inside the page)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = capture(
        args.url,
        args.out,
        compare=args.compare,
        executable=args.chromium,
        timeout_seconds=args.timeout,
        width=args.width,
        height=args.height,
    )
    print(f"{result.path}: {result.answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
