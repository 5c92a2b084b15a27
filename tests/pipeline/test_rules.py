"""Selection rules on a hand-made head table: each criterion and each combination."""

import pandas as pd
import pytest

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.rules import apply_rule, check_rule, rule_sources


@pytest.fixture()
def tables():
    a = pd.DataFrame(
        {
            "layer": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3],
            "head": [0, 1, 2, 0, 1, 2, 0, 1, 2, 0],
            "retrieval": [0.9, 0.1, 0.5, 0.0, 0.7, 0.3, 0.2, 0.8, 0.6, 0.4],
            "label": ["x", "y", "x", "y", "x", "y", "x", "y", "x", "y"],
        }
    )
    b = a[["layer", "head"]].assign(sink_mass=[0.95, 0.1, 0.2, 0.9, 0.3, 0.05, 0.8, 0.6, 0.1, 0.7])
    return {"r": a, "s": b}


def select(rule, tables):
    check_rule(rule, "test")
    table = apply_rule(rule, lambda step, name: tables[step])
    return [(int(r.layer), int(r.head)) for r in table.itertuples()]


def test_top_bottom_threshold_and_equals(tables):
    assert select({"of": "r", "by": "retrieval", "top_k": 3}, tables) == [(0, 0), (2, 1), (1, 1)]
    assert select({"of": "r", "by": "retrieval", "top_fraction": 0.2}, tables) == [(0, 0), (2, 1)]
    assert select({"of": "r", "by": "retrieval", "top_fraction": 0.01}, tables) == [(0, 0)]  # at least one
    assert sorted(select({"of": "s", "by": "sink_mass", "below": 0.15}, tables)) == [(0, 1), (1, 2), (2, 2)]
    assert sorted(select({"of": "s", "by": "sink_mass", "above": 0.75}, tables)) == [(0, 0), (1, 0), (2, 0)]
    assert len(select({"of": "r", "by": "label", "equals": "x"}, tables)) == 5
    assert len(select({"of": "r", "all": True}, tables)) == 10


def test_bottom_k_breaks_ties_by_layer_then_head(tables):
    # sink_mass 0.05 (1,2) then a tie at 0.1: (0,1) and (2,2) -> (0,1) first
    assert select({"of": "s", "by": "sink_mass", "bottom_k": 2}, tables) == [(0, 1), (1, 2)]


def test_intersection_union_difference(tables):
    top = {"of": "r", "by": "retrieval", "top_fraction": 0.5}  # (0,0) (2,1) (1,1) (2,2) (0,2)
    low_sink = {"of": "s", "by": "sink_mass", "below": 0.5}  # (0,1) (0,2) (1,1) (1,2) (2,2)
    assert sorted(select({"intersection": [top, low_sink]}, tables)) == [(0, 2), (1, 1), (2, 2)]
    assert sorted(select({"difference": [top, low_sink]}, tables)) == [(0, 0), (2, 1)]
    union = select({"union": [top, low_sink]}, tables)
    assert len(union) == len(set(union)) == 7
    table = apply_rule({"intersection": [top, low_sink]}, lambda step, name: tables[step])
    assert list(table["score"]) == sorted(table["retrieval"], reverse=True)  # score from the first rule
    assert table.attrs["method"] == "select"


@pytest.mark.parametrize(
    "rule, message",
    [
        ({"of": "r", "by": "retrieval"}, "exactly one of"),
        ({"of": "r", "top_k": 0}, "integer >= 1"),
        ({"of": "r", "top_fraction": 5}, r"fraction in \(0, 1\]"),
        ({"of": "r", "top_k": 2, "above": 1.0}, "exactly one of"),
        ({"by": "x", "top_k": 2}, "needs 'of:"),
        ({"of": "r", "top_k": 2, "sort": "x"}, "unknown rule key"),
        ({"intersection": [{"of": "r", "top_k": 1}]}, "at least two rules"),
        ("top 5%", "a rule is a mapping"),
    ],
)
def test_malformed_rules_are_rejected(rule, message):
    with pytest.raises(PipelineError, match=message):
        check_rule(rule, "step 'x'")


def test_missing_column_names_the_columns(tables):
    with pytest.raises(PipelineError, match="no column 'nope'"):
        apply_rule({"of": "r", "by": "nope", "top_k": 1}, lambda step, name: tables[step])


def test_rule_sources_lists_every_leaf():
    rule = {
        "union": [
            {"of": "a", "top_k": 1},
            {"difference": [{"of": "b", "by": "x", "top_k": 1}, {"of": "a", "all": True}]},
        ]
    }
    assert rule_sources(rule) == [("a", "heads", "score"), ("b", "heads", "x"), ("a", "heads", "score")]
