"""The console in a real browser, as a product manager and an analyst use it; the tests run in order, as one story.

An editor creates an A/B test of two reward schedules through the form and starts it;
shoppers arrive through the API; an analyst reads its results, switches alpha and
correction, downloads the CSV, is refused the editor's pages and hand-made posts, and
signs out. Every page's screenshot lands in tests/browser/artifacts/.
"""
from __future__ import annotations

import csv
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, Demo

pytestmark = pytest.mark.usefixtures("demo")


@pytest.fixture
def visit(browser: Any, demo: Demo) -> Any:
    """Open a fresh browser context (no cookies) and record every request it makes."""
    contexts = []

    def open_page() -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.requested = []  # type: ignore[attr-defined]
        page.on("request", lambda r: page.requested.append(r.url))  # type: ignore[attr-defined]
        return page

    yield open_page
    for context in contexts:
        for page in context.pages:  # the console needs nothing but the service itself
            assert all(u.startswith((demo.base, "data:")) for u in page.requested), page.requested
        context.close()


def shot(page: Any, name: str) -> None:
    """Save the whole page as a test artefact."""
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, demo: Demo, role: str) -> None:
    """Sign in through the form, with the keyboard."""
    page.goto(demo.base + "/ui/")
    assert "/ui/sign-in" in page.url
    page.keyboard.press("Tab")  # the first stop is the skip link
    assert page.evaluate("document.activeElement.className") == "skip"
    page.fill("#api_key", demo.keys[role])
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/" + ("experiments" if role != "storefront" else "docs"))
    assert page.locator(".who").inner_text().endswith(role) or role in page.locator(".who").inner_text()


def test_editor_creates_and_starts_an_ab_experiment(visit, demo):
    page = visit()
    sign_in(page, demo, "editor")
    shot(page, "01-experiments")
    # The PM's first question: how many users, and how long? Planned from the new-experiment form's link.
    page.click("text=New experiment")
    page.click("text=Plan the sample size")
    page.fill("#f-baseline", "0.12")
    page.fill("#f-mde", "0.03")
    page.fill("#f-daily_users", "400")
    page.click("button:text-is('Plan')")
    page.wait_for_url("**/ui/plan?**")
    assert "users per arm" in page.locator("#answer-title").inner_text() and "days at 400 users a day" in page.locator("#answer-title").inner_text()
    shot(page, "01b-plan")
    page.click("text=Experiments")
    page.click("text=New experiment")
    page.fill("#f-key", "console-ab")
    page.fill("#f-name", "Per-unit points vs 50 points on every 3rd order")
    page.fill("#f-arms-0-key", "control")
    page.select_option("#f-arms-0-schedule-type", "per_unit")
    page.fill("#f-arms-0-schedule-per_unit-points_per_unit", "1")
    page.fill("#f-arms-1-key", "every-3rd")
    page.select_option("#f-arms-1-schedule-type", "fixed_ratio")
    # The type picker shows only the chosen type's fields.
    assert page.is_visible("#f-arms-1-schedule-fixed_ratio-every")
    assert not page.is_visible("#f-arms-1-schedule-per_unit-points_per_unit")
    assert not page.is_visible("#f-arms-0-schedule-fixed_ratio-every")
    page.fill("#f-arms-1-schedule-fixed_ratio-every", "0")
    page.fill("#f-arms-1-schedule-fixed_ratio-points", "50")
    page.fill("#f-metrics-0-key", "conversion")
    page.click("text=Create draft")
    error = page.locator("#f-arms-1-schedule-fixed_ratio-every-error")
    assert "greater than or equal to 1" in error.inner_text()
    assert page.get_attribute("#f-arms-1-schedule-fixed_ratio-every", "aria-invalid") == "true"
    assert page.get_attribute(".error-summary a", "href") == "#f-arms-1-schedule-fixed_ratio-every"
    assert page.evaluate("document.activeElement.className") == "error-summary"  # focus goes to what needs attention
    shot(page, "02-experiment-form-with-error")
    page.fill("#f-arms-1-schedule-fixed_ratio-every", "3")
    page.click("text=Create draft")
    page.wait_for_url("**/ui/experiments/console-ab#top")  # not the error summary's link to a field
    assert "draft" in page.locator("dl.facts").inner_text()
    shot(page, "03-experiment-draft")
    # Back to the form that came back with its error shows the form again: Chromium had shown "Confirm Form
    # Resubmission" (ERR_CACHE_MISS), and resending would have answered that the draft already exists.
    response = page.go_back()
    assert response is not None and response.request.method == "GET" and response.status == 200
    assert page.is_visible("#f-key")
    page.go_forward()
    page.wait_for_url("**/ui/experiments/console-ab#top")
    page.click("text=Start…")
    shot(page, "04-confirm-start")
    page.check("#confirm")
    page.click("button:has-text('Start')")
    page.wait_for_url("**/ui/experiments/console-ab#top")
    assert "running" in page.locator("dl.facts").inner_text()
    # Running, its design is frozen; its guardrails and analysis settings still change, on its settings page.
    page.click("text=Settings")
    page.fill("#f-guardrails", "retention_d7")
    page.check("#f-analysis-sequential")
    page.click("text=Save settings")
    page.wait_for_url("**/ui/experiments/console-ab#top")
    facts = page.locator("dl.facts").inner_text()
    assert "retention_d7" in facts and "sequential intervals" in facts
    page.click("nav >> text=Experiments")
    row = page.locator("tr", has=page.locator("a", has_text="console-ab"))
    assert "running" in row.inner_text()
    shot(page, "05-experiments-with-new")


def _shoppers(demo: Demo) -> None:
    """Sixty shoppers meet the experiment through the storefront API; some convert and earn points."""
    store = demo.keys["storefront"]
    outcomes = []
    for i in range(60):
        status, body = demo.server.request("GET", f"/v1/experiments/console-ab/assignment?user_id=shopper-{i}", key=store)
        assert status == 200 and body["enrolled"], body
        # About 80 % convert in every-3rd and 20 % in the control, so its gain, and so its cost, is there whatever the split.
        if (i % 5 != 0) if body["arm"] == "every-3rd" else (i % 5 == 0):
            outcomes.append({"outcome_id": f"o-{i}", "experiment": "console-ab", "user_id": f"shopper-{i}", "metric": "conversion", "value": 1})
            for k in range(3 if body["arm"] == "every-3rd" else 1):  # every-3rd pays on a user's third action
                status, _ = demo.server.request("POST", "/v1/rewards", {"action_id": f"a-{i}-{k}", "user_id": f"shopper-{i}", "experiment": "console-ab", "value": 30.0}, key=store)
                assert status == 200
    assert demo.server.request("POST", "/v1/outcomes", {"outcomes": outcomes}, key=store)[0] == 200


def test_analyst_reads_results_switches_alpha_and_downloads_the_csv(visit, demo):
    _shoppers(demo)
    page = visit()
    sign_in(page, demo, "analyst")
    assert page.locator("text=New experiment").count() == 0
    page.click("tr:has(a:text-is('console-ab')) >> text=Results >> visible=true")
    page.wait_for_url("**/ui/experiments/console-ab/results")
    assert page.locator("table tbody tr").first.locator("th").inner_text().startswith("control")
    assert page.locator("svg.chart").count() >= 2  # the forest plot and the daily series at least
    assert "sample ratio mismatch" in page.locator("#srm-title + p").inner_text().lower()
    assert page.locator(".verdicts li").last.inner_text().startswith("every-3rd: ")  # one sentence for the arm, in words
    page.fill("#f-alpha", "0.1")
    page.select_option("#f-correction", "bh")
    page.click("text=Apply")
    page.wait_for_url("**correction=bh**")
    assert "90.0% CI" in page.locator("table.arms thead").inner_text()
    # The cost per incremental conversion shows a figure only where the arm's gain is established,
    # and says so under the table, with what a negative figure means.
    cost = page.locator("table.arms tbody tr").nth(1).locator("td").last.inner_text()
    assert cost == "not established" or cost.lstrip("-").replace(",", "").replace(".", "").isdigit(), cost
    assert page.locator("text=better and cheaper").count() == 1
    shot(page, "06-results-console-ab")
    # The file holds what the switches show, applied or not.
    page.fill("#f-alpha", "0.2")
    with page.expect_download() as download:
        page.click("text=Download CSV")
    with open(download.value.path(), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:4] == ["experiment", "metric", "metric_kind", "test"]
    assert [r[rows[0].index("arm")] for r in rows[1:]] == ["control", "every-3rd"]
    assert {r[rows[0].index("alpha")] for r in rows[1:]} == {"0.2"} and {r[rows[0].index("correction")] for r in rows[1:]} == {"bh"}
    page.goto(demo.base + "/ui/experiments/points-q4/results")
    # The forest plot, the cumulative series, each arm's difference by day in its confidence sequence, and retention.
    assert page.locator("svg.chart").count() == 4
    shot(page, "07-results-points-q4")
    # The demo's primary metric is CUPED-adjusted by default; the page says so and switches it off.
    assert page.locator("text=Adjusted with CUPED").count() == 1
    page.select_option("#f-cuped", "false")
    page.click("text=Apply")
    page.wait_for_url("**cuped=false**")
    assert page.locator("text=Adjusted with CUPED").count() == 0 and "Rate [" in page.locator("table.arms thead").inner_text()
    # What if the demo's bandit had sent everyone to one arm, or split them otherwise: valued from its logged assignments.
    page.goto(demo.base + "/ui/experiments/bonus-bandit/results")
    page.click("text=What if another split?")
    page.wait_for_url("**/ui/experiments/bonus-bandit/what-if?metric=conversion&alpha=0.05")
    assert page.locator("#answer-title").inner_text().startswith("Serving only bonus-")
    page.check("#allocation-shares")
    page.fill("#f-weight-0", "3")  # bonus-50, the first arm
    page.click("button:has-text('Estimate')")
    page.wait_for_url("**allocation=shares**")
    assert page.locator("#answer-title").inner_text().startswith("Allocating ")
    shot(page, "07b-what-if")


def test_analyst_is_refused_the_editors_pages_and_hand_made_posts(visit, demo):
    page = visit()
    sign_in(page, demo, "analyst")
    for path in ("/ui/new-experiment", "/ui/experiments/console-ab/edit", "/ui/experiments/console-ab/stop", "/ui/models"):
        response = page.goto(demo.base + path)
        assert response.status == 403, path
    assert "analyst key cannot use this page" in page.locator("main").inner_text()
    shot(page, "08-forbidden")
    token = page.goto(demo.base + "/ui/experiments") and page.get_attribute("input[name=csrf_token]", "value")
    without_token = page.request.post(demo.base + "/ui/experiments/console-ab/stop", form={"confirm": "yes"})
    with_token = page.request.post(demo.base + "/ui/experiments/console-ab/stop", form={"confirm": "yes", "csrf_token": token})
    assert (without_token.status, with_token.status) == (403, 403)
    assert demo.server.request("GET", "/v1/experiments/console-ab", key=demo.keys["analyst"])[1]["status"] == "running"
    page.click("text=Sign out")
    page.wait_for_url("**/ui/sign-in#top")
    page.goto(demo.base + "/ui/experiments/console-ab/results")
    assert "/ui/sign-in" in page.url


def test_editor_trains_activates_and_looks_up_a_user(visit, demo):
    page = visit()
    sign_in(page, demo, "editor")
    page.click("nav >> text=Models")
    page.wait_for_url("**/ui/models")
    page.wait_for_load_state()  # count() does not wait, and the click waits only for the navigation to commit
    assert page.locator("svg.chart").count() == 1 and page.locator("text=serving").count() == 1
    page.click("text=Train a new version")
    page.wait_for_url("**/ui/models/new")
    page.select_option("#f-algorithm", "item_knn")
    assert not page.is_checked("#activate")  # nothing goes live unless asked
    page.check("#tune")  # search two parameter sets first
    page.fill("#f-tune-trials", "2")
    page.locator("#f-tune details summary").click()
    shot(page, "09-train-tuned")

    # A slow network: the second click of an impatient double click lands while the first is on its way.
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and r.url.endswith("/ui/models/new") else None)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 400, "downloadThroughput": -1, "uploadThroughput": -1})
    button = page.locator("main form button:has-text('Train')")
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    page.mouse.down()
    page.mouse.up()
    page.wait_for_timeout(250)
    page.mouse.down()
    page.mouse.up()
    page.wait_for_url("**/ui/models#top")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    assert len(posts) == 1  # one run, not two
    # While it trains the page reloads itself; wait for both versions to be ready.
    page.locator("tbody tr:has(.status-ready)").nth(1).wait_for(timeout=30_000)
    # The note left by the start stays true once the run has ended (it had read "Training v…" above a ready row).
    assert page.locator(".flash").inner_text().startswith("Started training ")
    tuned = page.locator("tbody tr:has-text('item_knn')")
    assert tuned.count() == 1
    assert "tuned on NDCG@10: 2 trials" in tuned.inner_text()
    tuned.locator("summary").click()
    assert tuned.locator("table.trials tbody tr").count() == 2
    shot(page, "09-models")
    page.click("tbody th >> text=Activate")
    page.check("#confirm")
    page.click("button:has-text('Activate')")
    page.wait_for_url("**/ui/models#top")
    assert "item_knn" in page.locator("tr:has(.badge:text-is('serving'))").inner_text()
    page.click("nav >> text=Users")
    page.fill("#user_id", "user-1")
    page.keyboard.press("Enter")
    page.wait_for_url("**user_id=user-1")
    assert page.locator("#recs-title + p + ol li").count() == 10
    assert page.locator("#assign-title + .scroll table tbody tr").count() >= 1
    shot(page, "10-user")
    # An editor is offered no results (they are the analyst's); an admin key reaches every page below.
    page.goto(demo.server.base + "/ui/experiments")
    assert page.locator("table tbody tr").count() >= 1 and page.locator("a:has-text('Results')").count() == 0
    page.click("text=Sign out")
    sign_in(page, demo, "admin")
    # On a phone's width no page scrolls sideways: a wide table scrolls on its own, and the longest key
    # and metric names the API accepts wrap or shrink.
    long_key, long_metric = "k" * 64, "second_purchase_within_14_days_of_exposure"
    body = {"key": long_key, "name": "Long names", "arms": [{"key": "control"}, {"key": "b"}],
            "metrics": [{"key": long_metric, "kind": "binary"}], "primary_metric": long_metric}
    assert demo.server.request("POST", "/v1/experiments", body, key=demo.keys["editor"])[0] == 201
    page.set_viewport_size({"width": 320, "height": 720})  # the narrowest width a page must fit without scrolling sideways (WCAG's reflow)
    for path in ("/ui/experiments", "/ui/new-experiment", "/ui/models", "/ui/models/new", "/ui/experiments/points-q4/results", "/ui/users?user_id=user-1",
                 "/ui/users/at-risk", "/ui/plan?baseline=0.1&mde=0.01", "/ui/experiments/bonus-bandit/what-if",
                 f"/ui/experiments/{long_key}/results", f"/ui/experiments/{long_key}/start"):
        page.goto(demo.server.base + path)
        if path == "/ui/models/new":
            page.locator("summary:has-text('Default ranges')").click()
        overflowing = page.evaluate("[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 320).map(e => e.tagName + '.' + e.className)")
        assert page.evaluate("document.documentElement.scrollWidth") <= 320, (path, overflowing[:8])
        # A chart keeps readable labels and scrolls within its figure instead of shrinking to the width.
        assert all(w >= 600 for w in page.evaluate("[...document.querySelectorAll('svg.chart')].map(c => c.getBoundingClientRect().width)")), path
        # What scrolls sideways can be reached and scrolled from the keyboard, and says what it holds.
        scrollers = page.evaluate(
            "[...document.querySelectorAll('body *')].filter(e => e.scrollWidth > e.clientWidth + 1 && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX))"
            ".map(e => [e.tagName, e.tabIndex, e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')])")
        assert all(tab == 0 and named for _, tab, named in scrollers), (path, scrollers)
    shot(page, "12-narrow-user")
    # On a phone the list offers each experiment's results beside its key, and a name breaks between words.
    page.goto(demo.server.base + "/ui/experiments")
    first = page.locator("table tbody tr").first.locator("th")
    assert first.locator(".phone-only a:text-is('Results')").is_visible()
    assert first.locator(".wraps").bounding_box()["width"] >= 100
    # And the models' list its activation or rollback beside the version, not in the last column off-screen.
    page.goto(demo.server.base + "/ui/models")
    assert page.locator("tbody th a:has-text('Roll back')").first.is_visible()
    # At a laptop's 1366 px the results table shows every column without scrolling, the cost column too.
    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(demo.server.base + "/ui/experiments/console-ab/results")
    assert page.evaluate("(() => { const s = document.querySelector('table.arms').closest('.scroll'); return s.scrollWidth <= s.clientWidth; })()")
    # A bandit's table puts the IPW figures it is read by, and what each schedule costs, in sight; the naive
    # columns, which had pushed them past the edge, come after.
    page.goto(demo.server.base + "/ui/experiments/bonus-bandit/results")
    heads = page.locator("table.arms thead th")
    assert [heads.nth(i).inner_text() for i in range(4)][2:] == ["IPW mean [CI]", "SNIPW mean [CI]"]
    in_sight = "(h) => { const s = h.closest('.scroll').getBoundingClientRect(), r = h.getBoundingClientRect(); return r.right <= s.right; }"
    assert page.locator("table.arms thead th:has-text('Points per user')").evaluate(in_sight)
    page.goto(demo.server.base + "/ui/models")
    assert page.locator("tbody th a:has-text('Roll back')").first.evaluate(in_sight)


def test_api_reference_runs_from_the_vendored_swagger_ui(visit, demo):
    page = visit()
    sign_in(page, demo, "storefront")
    page.locator(".opblock").nth(20).wait_for()
    assert page.locator(".opblock-tag:has-text('recommendations')").count() == 1
    assert page.locator("h1").count() == 1  # the page's own, not Swagger UI's info block as well
    assert page.locator("h1").bounding_box()["x"] >= 8  # in the console's column, as on every page (its wrapper is a div here)
    shot(page, "11-api-reference")


def test_a_form_keeps_its_typing_when_another_tab_signs_in_with_another_role(visit, demo):
    page = visit()
    sign_in(page, demo, "editor")
    page.click("text=New experiment")
    page.fill("#f-key", "kept-typing")
    page.fill("#f-name", "Typed before the other tab signed in")
    other = page.context.new_page()  # another tab of the same browser: the same cookie
    other.requested = []
    other.on("request", lambda r: other.requested.append(r.url))
    other.goto(demo.base + "/ui/sign-in")
    other.fill("#api_key", demo.keys["analyst"])
    other.keyboard.press("Enter")
    other.wait_for_url("**/ui/experiments")
    page.click("button:text-is('Create draft')")
    assert "signed in with an analyst key" in page.locator("main").inner_text()
    page.fill("#api_key", demo.keys["editor"])
    page.keyboard.press("Enter")
    page.locator("button:text-is('Back to the form')").wait_for()
    page.reload()  # posts the sign-in again, with the token it replaced: the same page, not a 403
    page.click("button:text-is('Back to the form')")
    page.wait_for_url("**/ui/new-experiment")
    assert page.input_value("#f-name") == "Typed before the other tab signed in" and page.input_value("#f-key") == "kept-typing"
    assert "Nothing is saved yet" in page.locator("main").inner_text()
    shot(page, "09-form-kept-through-sign-in")
