"""Targeting rules as the domain reads them: every bad condition named at once, the size bound said once."""
from __future__ import annotations

import pytest

from experiments.targeting import MAX_CONDITIONS, TargetingError, parse_rule, require_values


def test_every_bad_condition_is_named_with_its_path_the_first_in_the_message():
    rule = {"any": [{"attribute": "a", "op": "nope"}, {"attribute": "b", "op": "eq", "value": 1}, {"all": [{"attribute": "", "op": "exists"}]}]}
    with pytest.raises(TargetingError) as caught:
        parse_rule(rule)
    assert [field for field, _ in caught.value.problems] == ["targeting.any.0.op", "targeting.any.2.all.0.attribute"]
    assert str(caught.value).startswith("targeting.any.0.op: ") and str(caught.value).endswith("(and 1 more)")


def test_a_rule_past_the_size_bound_says_so_once_after_what_was_wrong_before_it():
    bad = [{"attribute": "a", "op": "nope"}] + [{"attribute": f"x{i}", "op": "eq", "value": i} for i in range(MAX_CONDITIONS + 5)]
    with pytest.raises(TargetingError) as caught:
        parse_rule({"all": [{"any": bad}]})
    fields = [field for field, _ in caught.value.problems]
    assert fields[0] == "targeting.all.0.any.0.op" and len(fields) == 2 and "at most" in caught.value.problems[1][1]


def test_every_value_a_rule_may_not_hold_is_named():
    rule = parse_rule({"all": [{"attribute": "a", "op": "eq", "value": None}, {"attribute": "b", "op": "in", "value": ["x", None]}, {"attribute": "c", "op": "exists"}]})
    with pytest.raises(TargetingError) as caught:
        require_values(rule)
    assert [field for field, _ in caught.value.problems] == ["targeting.all.0.value", "targeting.all.1.value"]


def test_numeric_text_in_a_rule_keeps_the_bound_numbers_have():
    for value in ("1e13", "-2e12", 10**13):
        rule = parse_rule({"all": [{"attribute": "spend", "op": "lt", "value": value}]})
        with pytest.raises(TargetingError) as caught:
            require_values(rule)
        assert "at most 1e+12 in magnitude" in caught.value.problems[0][1]
    require_values(parse_rule({"all": [{"attribute": "spend", "op": "lt", "value": "1e12"}]}))

