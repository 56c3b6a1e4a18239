"""The HTML report in a real browser (headless Debian Chromium driven by Playwright): it loads
without console errors, every figure draws, and the sparsity sliders change what is shown.

Needs the `playwright` package (dev extra) and /usr/bin/chromium (`.ci/run` installs Debian's
chromium). Skipped when Chromium is missing, except under CI where that is a failure.
"""

import json
import os
import shutil

import pytest

from tests.reproduction import tiny_reproduction

CHROMIUM = os.environ.get("SUPERPOSITION_CHROMIUM", "/usr/bin/chromium")
# Flags for a sandboxed machine with no network (see .ci/run): no first-run, sync or update traffic.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not shutil.which(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError(f"browser tests need Chromium at {CHROMIUM}; .ci/run installs Debian's chromium")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

PLOTS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => {
    const r = d.getBoundingClientRect();
    return {id: d.id, width: r.width, height: r.height, drawn: d.querySelectorAll('.trace, .hm').length,
            visible: d._fullData.filter(t => t.visible === true).length, sliders: (d.layout.sliders || []).length};
})"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser")
    tiny_reproduction(out)
    return out / "report.html"


@pytest.fixture(scope="module")
def page(report):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.errors = []
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(report.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length > 0")
        yield page
        browser.close()


def test_report_loads_without_console_errors_and_every_figure_draws(page, tmp_path):
    plots = page.evaluate(PLOTS)
    assert len(plots) >= 4, plots
    for plot in plots:
        assert plot["width"] > 100 and plot["height"] > 100, plot
        assert plot["drawn"] > 0 and plot["visible"] > 0, plot
    images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.naturalWidth, i.naturalHeight])")
    assert len(images) == 3 and all(w > 100 and h > 100 for _, w, h in images), images
    assert page.errors == []
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 50_000


@pytest.mark.parametrize("plot_id", ["fig-intro-intro-slider", "fig-basic-basic-slider"])
def test_sparsity_slider_changes_the_figure(page, plot_id, tmp_path):
    plot = page.locator(f"#{plot_id}")
    plot.scroll_into_view_if_needed()
    visible = f"() => document.getElementById('{plot_id}')._fullData.map(t => t.visible === true)"
    before, shot = page.evaluate(visible), plot.screenshot(path=str(tmp_path / "before.png"))
    rail = plot.locator(".slider-rail-touch-rect").bounding_box()
    page.mouse.click(rail["x"] + rail["width"] - 4, rail["y"] + rail["height"] / 2)
    page.wait_for_function(f"document.getElementById('{plot_id}').layout.sliders[0].active > 0")
    page.wait_for_function(f"JSON.stringify(({visible})()) !== {json.dumps(json.dumps(before, separators=(',', ':')))}")
    after = page.evaluate(visible)
    assert after != before and sum(after) == sum(before)  # another sparsity's traces, as many
    assert plot.screenshot(path=str(tmp_path / "after.png")) != shot
    assert page.errors == []
