"""The console for keyboard and screen-reader users (WCAG 2.2 AA), checked without axe so that a clean clone runs it.

Every page: one h1 and no skipped heading level, the landmarks and the skip link, a name on every
control, scoped table headers, a title and a description on every chart and the figures of each line
chart as a table, and a focus ring on every Tab stop. Then the experiment form's errors tied to their
controls, the results switches and the CSV by keyboard alone, text at twice the size, and a draft's
full schedule on a 320 px screen.
"""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.browser.conftest import Demo

pytestmark = pytest.mark.usefixtures("demo")

PAGES = (
    "/ui/experiments", "/ui/experiments/points-q4", "/ui/experiments/points-q4/results", "/ui/experiments/bonus-bandit/results",
    "/ui/experiments/points-q4/what-if", "/ui/experiments/points-q4/settings", "/ui/experiments/points-q4/stop", "/ui/new-experiment",
    "/ui/plan?baseline=0.1&mde=0.02&daily_users=300", "/ui/models", "/ui/models/new", "/ui/users/at-risk", "/ui/users?user_id=user-1",
    "/ui/docs", "/ui/no-such-page",
)

# What a page offers a screen reader, gathered in one pass: each list names what is missing.
STRUCTURE = """() => {
  const named = e => (e.labels && e.labels.length) || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby');
  const text = id => { const e = id && document.getElementById(id); return e ? e.textContent.trim() : ''; };
  return {
    headings: [...document.querySelectorAll('h1, h2, h3, h4, h5, h6')].map(h => Number(h.tagName[1])),
    landmarks: ['header', 'nav', 'main'].filter(s => document.querySelectorAll(s).length !== 1),
    skip: !!document.querySelector('a.skip[href="#main"]') && !!document.getElementById('main'),
    unnamed: [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
      .filter(e => e.tagName === 'BUTTON' ? !e.textContent.trim() && !e.title && !named(e) : !named(e)).map(e => e.name || e.id || e.outerHTML.slice(0, 80)),
    unscoped: [...document.querySelectorAll('th')].filter(th => !th.hasAttribute('scope')).map(th => th.textContent.trim().slice(0, 40)),
    charts: [...document.querySelectorAll('svg.chart')].map(s => ({
      role: s.getAttribute('role'), title: text(s.getAttribute('aria-labelledby')), desc: text(s.getAttribute('aria-describedby')),
      rows: (s.parentElement.querySelector('details.chart-data') || {querySelectorAll: () => []}).querySelectorAll('tbody tr').length,
    })),
  };
}"""

FOCUS = """() => { const e = document.activeElement, s = getComputedStyle(e);
  return {what: e.tagName + (e.id ? '#' + e.id : '') + ' ' + (e.textContent || '').trim().slice(0, 30),
          visible: (e.matches(':focus-visible') || e.matches(':focus-within')) && (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2 || s.boxShadow !== 'none')}; }"""


@pytest.fixture
def page(browser: Any, demo: Demo) -> Iterator[Any]:
    """A fresh context signed in with the admin key, which reaches every page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.goto(demo.base + "/ui/sign-in")
    tab.fill("#api_key", demo.keys["admin"])
    with tab.expect_navigation():
        tab.keyboard.press("Enter")
    yield tab
    context.close()


def test_every_page_has_headings_landmarks_names_scoped_headers_and_described_charts(page, demo):
    for path in PAGES:
        page.goto(demo.base + path)
        if path == "/ui/docs":  # Swagger UI draws the reference after the page loads
            page.wait_for_selector(".opblock-tag")
        found = page.evaluate(STRUCTURE)
        levels = found["headings"]
        assert levels.count(1) == 1 and all(b <= a + 1 for a, b in zip(levels, levels[1:])), (path, levels)
        assert not found["landmarks"] and found["skip"], path
        assert not found["unnamed"], (path, found["unnamed"])
        assert not found["unscoped"], (path, found["unscoped"])
        for chart in found["charts"]:
            assert chart["role"] == "img" and chart["title"] and chart["desc"], (path, chart)
    # The line charts carry every figure in a table: the daily series has a row a day, the retention curve a row a day after exposure.
    page.goto(demo.base + "/ui/experiments/points-q4/results")
    charts = page.evaluate(STRUCTURE)["charts"]
    assert len(charts) >= 3 and all(c["rows"] >= 1 for c in charts[1:]), charts  # the first, the forest plot, is the arms table drawn
    assert page.locator("details.chart-data").count() == len(charts) - 1
    page.locator("details.chart-data summary").first.click()
    assert page.locator("details.chart-data").first.locator("tbody tr th").first.inner_text()


def test_every_tab_stop_shows_a_focus_ring(page, demo):
    # The draft form's date inputs too: their focus sits on a part inside them, where :focus-visible does not reach.
    status, _ = demo.server.request("POST", "/v1/experiments", {"key": "a11y-draft", "name": "Dates", "arms": [
        {"key": "control", "schedule": {"type": "per_unit", "points_per_unit": 1}}, {"key": "b", "schedule": {"type": "per_unit", "points_per_unit": 2}}],
        "metrics": [{"key": "conversion"}], "primary_metric": "conversion"}, key=demo.keys["editor"])
    assert status == 201
    for path, stops in (("/ui/experiments/points-q4/results", 40), ("/ui/experiments/a11y-draft/edit", 70), ("/ui/models", 25)):
        page.goto(demo.base + path)
        missing = []
        for _ in range(stops):
            page.keyboard.press("Tab")
            focus = page.evaluate(FOCUS)
            if not focus["visible"] and not focus["what"].startswith("BODY"):
                missing.append(focus["what"])
        assert not missing, (path, missing)


def test_form_errors_are_tied_to_their_controls_and_take_the_focus(page, demo):
    page.goto(demo.base + "/ui/new-experiment")
    page.fill("#f-key", "Bad Key")
    page.fill("#f-arms-0-key", "control")
    page.select_option("#f-arms-0-schedule-type", "per_unit")
    page.fill("#f-arms-0-schedule-per_unit-points_per_unit", "-1")
    # A menu sent with a value it does not offer (a hand-made post) is named under that menu.
    page.evaluate("() => { const s = document.querySelector('#f-metrics-0-kind'); s.add(new Option('odd', 'odd')); s.value = 'odd'; }")
    page.fill("#f-metrics-0-key", "conversion")
    page.click("button:text-is('Create draft')")
    page.locator(".error-summary").wait_for()
    assert page.evaluate("document.activeElement.className") == "error-summary"
    assert page.get_attribute(".error-summary", "role") == "alert"
    untied = page.evaluate("""() => [...document.querySelectorAll('.error[id]')].filter(e => {
        const users = [...document.querySelectorAll('[aria-describedby]')].filter(c => c.getAttribute('aria-describedby').split(/\\s+/).includes(e.id));
        return !users.length || users.some(c => c.tagName !== 'FIELDSET' && c.getAttribute('aria-invalid') !== 'true');
      }).map(e => e.id)""")
    assert page.locator(".error[id]").count() >= 3 and not untied, untied
    # A rule over a group (unique arm keys) describes its fieldset, read on entering it.
    page.goto(demo.base + "/ui/new-experiment")
    page.fill("#f-key", "two-controls")
    page.fill("#f-name", "Two controls")
    for i in (0, 1):
        page.fill(f"#f-arms-{i}-key", "control")
        page.select_option(f"#f-arms-{i}-schedule-type", "per_unit")
        page.fill(f"#f-arms-{i}-schedule-per_unit-points_per_unit", "1")
    page.fill("#f-metrics-0-key", "conversion")
    page.click("button:text-is('Create draft')")
    assert page.get_attribute("#f-arms", "aria-describedby") == "f-arms-error"
    assert "unique" in page.locator("#f-arms-error").inner_text()


def test_results_switches_and_the_csv_by_keyboard_alone(page, demo):
    page.goto(demo.base + "/ui/experiments/points-q4/results")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "f-cuped":
            break
    page.keyboard.press("ArrowDown")  # as the experiment says -> on
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "f-sequential"
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")  # Apply
    assert "cuped=true" in page.url
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Download CSV":
            break
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    assert download.value.suggested_filename.endswith(".csv")


def test_text_follows_the_browsers_font_size_and_a_full_draft_fits_a_phone(page, demo):
    # A reader's larger default font size (or text-only zoom) reaches the text: nothing is set in px.
    page.set_viewport_size({"width": 640, "height": 900})
    page.goto(demo.base + "/ui/experiments/points-q4/results")
    page.evaluate("() => { document.documentElement.style.fontSize = '200%'; }")
    assert page.evaluate("getComputedStyle(document.querySelector('main p')).fontSize") == "32px"
    assert page.evaluate("document.documentElement.scrollWidth") <= 640
    # With a schedule chosen, an arm shows its multiplier window's dates: they fit 320 px, inside three fieldsets.
    page.set_viewport_size({"width": 320, "height": 720})
    page.goto(demo.base + "/ui/new-experiment")
    page.select_option("#f-arms-0-schedule-type", "per_unit")
    assert page.is_visible("#f-arms-0-schedule-multiplier-start")
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
