"""The gallery page in a real browser: Debian's headless Chromium driven by Playwright (never
a browser build Playwright downloads). Load the page, generate, check that the images appear
and that the provenance shown is the request's; text streams in.

``python tests/test_serve_browser.py --screenshot docs/serve.png`` retakes the docs' picture."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from _serve import CHROMIUM, NO_CHROMIUM, Server, gallery, generate

pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)


def browse(url: str, screenshot: Path | None = None) -> dict:
    """Drive the page: three models generate; returns what the page shows."""
    seen: dict = {}
    with gallery(url) as (page, errors):
        page.wait_for_selector("#model-gan-mnist button:not([disabled])", timeout=60_000)
        seen["cards"] = page.locator("section.model").count()
        seen["metric_fd"] = page.locator("#model-gan-mnist th[data-metric=fd]").count()

        gan = page.locator("#model-gan-mnist")
        generate(gan, n=9, seed=7, truncation="0.7")
        seen["gan_images"] = gan.locator(".grid img").count()
        seen["gan_loaded"] = page.evaluate(
            "[...document.querySelectorAll('#model-gan-mnist .grid img')]"
            ".every(i => i.complete && i.naturalWidth === 28)")
        seen["gan_provenance"] = {
            key: gan.locator(f".provenance tr[data-key={key}] td").text_content()
            for key in ("model", "seed", "truncation")}

        text = page.locator("#model-textlm-shakespeare")
        seen["prompt_box"] = text.locator("textarea[data-option=prompt]").count()
        generate(text, prompt="ROMEO:", max_new_tokens="80")
        seen["text"] = text.locator(".text").text_content()  # as it streamed
        # then the sample itself, shown by the text modality's gallery_html
        seen["text_shown"] = text.locator(".grid .sample pre").all_text_contents()
        seen["stream_hidden"] = text.locator(".text").is_hidden()
        seen["text_seed"] = text.locator(".provenance tr[data-key=seed] td").text_content()

        digits = page.locator("#model-diffusion-mnist")
        generate(digits, n=8, seed=3, timeout=120_000)
        seen["digits"] = digits.locator(".grid img").count()
        seen["errors"] = errors + [e for e in page.locator(".error:visible").all_text_contents()
                                   if "not downloaded" not in e]
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
    return seen


def test_gallery_generates_with_provenance(tmp_path):
    srv = Server(tmp_path)
    try:
        seen = browse(srv.url + "/")
    finally:
        srv.stop()
    assert seen["errors"] == []
    assert seen["cards"] == 5 and seen["metric_fd"] == 1
    assert seen["gan_images"] == 9 and seen["gan_loaded"] is True
    assert seen["gan_provenance"] == {"model": "gan-mnist", "seed": "7", "truncation": "0.7"}
    assert seen["prompt_box"] == 1  # a "str" option is a text box, from the schema alone
    assert seen["text"].startswith("ROMEO:") and len(seen["text"]) > 20
    assert seen["text_shown"] == [seen["text"]] and seen["stream_hidden"]
    assert seen["text_seed"] == "0"
    assert seen["digits"] == 8


if __name__ == "__main__":  # retake docs/serve.png
    out = Path(sys.argv[sys.argv.index("--screenshot") + 1])
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        try:
            print(browse(server.url + "/", out))
        finally:
            server.stop()
