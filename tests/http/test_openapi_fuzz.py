"""Property test driven by the service's own OpenAPI document: no 5xx, no undocumented answers.

The operations' strategies are driven directly with Hypothesis: schemathesis'
pytest plugin does not load under pytest 9.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

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
