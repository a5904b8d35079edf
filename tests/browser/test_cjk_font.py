"""The Chinese page draws real Chinese glyphs, not boxes (issue 16, item 11).

A bare Debian has no font with Chinese glyphs: Chromium then draws every Chinese character as
the same empty box (the .notdef glyph of a Latin font). scripts/setup.sh --tests installs one
(fonts-wqy-zenhei); this checks, in the page a student sees, that Chromium found a font for them.
"""

from __future__ import annotations

import pytest

from browserkit import settle

pytestmark = pytest.mark.browser


def platform_fonts(page, selector: str) -> dict[str, int]:
    """Font family -> glyphs it drew, for the text of the first element ``selector`` matches (Chromium's CDP)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    assert node, f"{selector} is not on the page"
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    cdp.detach()
    return {f["familyName"]: f["glyphCount"] for f in fonts}


def test_chinese_labels_are_drawn_with_a_cjk_font(browser, server, tmp_path):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        page.goto(server.url + "/")
        settle(page)
        assert page.locator("#model-load").inner_text().strip() == "加载"  # "Load"
        page.screenshot(path=str(tmp_path / "zh.png"))
        chinese = platform_fonts(page, "#model-load")
        # The same button with Latin text, for the fonts the page uses for Latin letters.
        page.evaluate(
            """() => {
                const probe = document.querySelector('#model-load').cloneNode(false);
                probe.id = 'latin-probe';
                probe.textContent = 'Load';
                document.querySelector('#model-load').after(probe);
            }"""
        )
        latin = platform_fonts(page, "#latin-probe")
        # A font that draws the Chinese label and not the Latin text: without a CJK font the label
        # is drawn (as boxes) by the page's Latin font alone.
        assert set(chinese) - set(latin), (
            f"The Chinese label is drawn only with {sorted(chinese)} (the Latin text uses {sorted(latin)}): "
            "no CJK font is installed, so Chinese shows as boxes. Install one: apt-get install fonts-wqy-zenhei"
        )
        # And the glyphs are real: two different characters do not measure like two empty boxes.
        widths = page.evaluate(
            """() => {
                const ctx = document.createElement('canvas').getContext('2d');
                ctx.font = getComputedStyle(document.querySelector('#model-load')).font;
                return [ctx.measureText('模型').width, ctx.measureText('\\uE000\\uE001').width];
            }"""
        )
        assert widths[0] != widths[1], f"'模型' is as wide as two boxes: {widths}"
    finally:
        context.close()
