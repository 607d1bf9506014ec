"""Property test driven by the service's own OpenAPI document: no 5xx, no undocumented answers.

The operations' strategies are driven directly with Hypothesis: schemathesis'
pytest plugin does not load under pytest 9. A second test takes valid cases and
puts extreme values where the generated ones were.
"""
from __future__ import annotations

import copy
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.experiment_helpers import ab_definition, assign, running
from tests.helpers import post_ok

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 12


def operations(app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def test_the_document_has_operations(app):
    labels = {op.label for op in operations(app)}
    assert "POST /v1/events" in labels and "GET /v1/users/{user_id}/recommendations" in labels


@pytest.mark.parametrize("role", ["admin", "storefront"])
def test_every_endpoint_answers_within_its_documented_schema(app, auth, role):
    headers = auth(role)
    failures = []
    for operation in operations(app):

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(headers={**(case.headers or {}), **headers}, checks=CHECKS)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


# Values at and beyond every bound: the largest and smallest floats, integers past 64 bits,
# timestamps at the ends of the calendar, long text, and null for whatever field is there.
HOSTILE_JSON: list[Any] = [
    1e308, -1e308, 5e-324, -5e-324, 2**64, -(2**63) - 1, 10**30,
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "x" * 10_000, "", None, True, [], {},
]
HOSTILE_TEXT = [
    "1e308", "-1e308", "5e-324", "1e-12", "NaN", "-inf", "18446744073709551616", "-9223372036854775809",
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "x" * 10_000, "", "null",
]
# An empty segment would route elsewhere (a 404 or 405 of the router, not of validation);
# `points-q4` names the seeded experiment, so that its results meet the hostile query values.
HOSTILE_PATH = [text for text in HOSTILE_TEXT if text] + ["1180591620717411303424", "points-q4"]
HOSTILE_EXAMPLES_PER_OPERATION = 15


def _places(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place inside a JSON body that holds a value (the first entries of lists)."""
    children = value.items() if isinstance(value, dict) else enumerate(value[:2]) if isinstance(value, list) else ()
    for key, child in children:
        yield at + (key,)
        yield from _places(child, at + (key,))


def _put(body: Any, place: tuple[Any, ...], value: Any) -> Any:
    """A copy of `body` with `value` at `place`."""
    body = copy.deepcopy(body)
    parent = body
    for key in place[:-1]:
        parent = parent[key]
    parent[place[-1]] = value
    return body


def _harden(case: Any, data: st.DataObject) -> None:
    """Replace up to three of the case's values, in its body, query or path, with hostile ones."""
    operation = case.operation
    for _ in range(data.draw(st.integers(1, 3))):
        where = ["query"] * bool(list(operation.query)) + ["path"] * bool(list(operation.path_parameters))
        places = list(_places(case.body)) if isinstance(case.body, (dict, list)) else []
        where += ["body"] * bool(places)
        if not where:
            return
        kind = data.draw(st.sampled_from(where))
        if kind == "body":
            case.body = _put(case.body, data.draw(st.sampled_from(places)), data.draw(st.sampled_from(HOSTILE_JSON)))
        elif kind == "query":
            name = data.draw(st.sampled_from([p.name for p in operation.query]))
            case.query = {**(case.query or {}), name: data.draw(st.sampled_from(HOSTILE_TEXT))}
        else:
            name = data.draw(st.sampled_from([p.name for p in operation.path_parameters]))
            case.path_parameters = {**case.path_parameters, name: data.draw(st.sampled_from(HOSTILE_PATH))}


@pytest.fixture
def seeded(client, auth):
    """A running A/B test with exposed users and outcomes at the 1e12 bound, so that results have figures to compute."""
    headers = auth("admin")
    running(client, headers, ab_definition())
    users = [f"u{i}" for i in range(30)]
    for user in users:
        assign(client, headers, "points-q4", user)
    outcomes = [
        {"outcome_id": f"o-{u}-{m}", "experiment": "points-q4", "user_id": u, "metric": m, "value": v}
        for i, u in enumerate(users)
        for m, v in (("conversion", i % 2), ("spend", 1e12 - i))
    ]
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, headers)
    return headers


def test_extreme_values_never_give_a_5xx_or_an_undocumented_answer(app, seeded):
    failures = []
    for operation in operations(app):

        @given(case=operation.as_strategy(), data=st.data())
        @settings(max_examples=HOSTILE_EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
        def check(case, data):
            _harden(case, data)
            case.call_and_validate(headers={**(case.headers or {}), **seeded}, checks=CHECKS)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_every_query_parameter_of_the_seeded_experiment_takes_every_extreme_value(app, seeded):
    # Generated cases rarely name the seeded experiment and one of its metrics at once, so
    # its endpoints get each hostile value in each parameter, next to otherwise valid ones.
    failures = []
    for operation in operations(app):
        names = [p.name for p in operation.query]
        if [p.name for p in operation.path_parameters] != ["key"] or not names:
            continue
        valid = [{"metric": m} for m in ("conversion", "spend")] if "metric" in names else [{"user_id": "u1"}] if "user_id" in names else [{}]
        for base in valid:
            for name in names:
                for value in HOSTILE_TEXT:
                    case = operation.Case(path_parameters={"key": "points-q4"}, query={**base, name: value})
                    try:
                        case.call_and_validate(headers=seeded, checks=CHECKS)
                    except Exception as exc:  # collect every failure, then report them together
                        failures.append(f"{operation.label} {case.query}: {exc}")
    assert not failures, "\n\n".join(failures[:20])
