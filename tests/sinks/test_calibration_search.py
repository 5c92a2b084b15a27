"""Head search (profiling, HeadHunter greedy), tasks, scoring and the bootstrap evaluation."""

import json

import pytest
import torch

import workbench as wb
from workbench.analyses.calibration import (
    Candidate,
    Item,
    Task,
    bootstrap,
    calibrate_zerotuning,
    candidates,
    evaluate,
    greedy,
    load_task,
    profile,
    score_task,
    zerotuning,
)
from workbench.analyses.calibration.tasks import resolve_mode


def synthetic(gains, interaction=None):
    """A score that adds the gains of the chosen candidates (plus optional pair interactions)."""

    def build(selected):
        return [c.name for c in selected]

    def score(names):
        value = sum(gains[n] for n in names)
        for (a, b), extra in (interaction or {}).items():
            if a in names and b in names:
                value += extra
        return value

    return build, score


def test_candidate_groups_cover_the_model():
    assert [c.name for c in candidates(3, 2, "head_index")] == ["H0", "H1"]
    assert candidates(3, 2, "head_index")[1].heads == ((0, 1), (1, 1), (2, 1))
    assert candidates(3, 2, "layer", layers=[2])[0].heads == ((2, 0), (2, 1))
    assert len(candidates(3, 2, "head")) == 6
    blocks = candidates(30, 9, "block", layers=range(2, 29))
    assert [c.name for c in blocks][:2] == ["L2-4", "L5-7"] and len(blocks) == 9 and len(blocks[0].heads) == 27
    with pytest.raises(wb.SpecError, match="3 layers"):
        candidates(3, 2, "layer", layers=[5])


def test_profile_ranks_candidates_by_gain():
    pool = [Candidate(n, ((i, 0),)) for i, n in enumerate("abcd")]
    build, score = synthetic({"a": -1.0, "b": 2.0, "c": 0.5, "d": 0.0})
    table = profile(pool, build, score, baseline=0.0)
    assert table["candidate"].tolist() == ["b", "c", "d", "a"]
    assert table["gain"].tolist() == [2.0, 0.5, 0.0, -1.0]


def test_greedy_adds_the_best_candidate_each_step_and_stops_without_gain():
    pool = [Candidate(n, ((i, 0),)) for i, n in enumerate("abcd")]
    build, score = synthetic({"a": 1.0, "b": 2.0, "c": 0.5, "d": -3.0}, interaction={("b", "c"): -1.0})
    selected, value, steps = greedy(pool, build, score, baseline=0.0, budget=4)
    # b (2), then a (3); c would add 0.5 - 1.0 < 0 and d loses: stop
    assert [c.name for c in selected] == ["b", "a"] and value == 3.0
    assert steps[-1]["added"] is None and len(steps) == 3
    selected, value, _ = greedy(pool, build, score, baseline=0.0, budget=1)
    assert [c.name for c in selected] == ["b"] and value == 2.0


def test_greedy_drops_candidates_that_share_heads_with_a_chosen_one():
    pool = [Candidate("h@2", ((0, 0),), 2.0), Candidate("h@0.5", ((0, 0),), 0.5), Candidate("g@2", ((0, 1),), 2.0)]
    build, score = synthetic({"h@2": 1.0, "h@0.5": 0.9, "g@2": 0.1})
    selected, _, _ = greedy(pool, build, score, baseline=0.0, budget=3)
    assert [c.name for c in selected] == ["h@2", "g@2"]


def test_bootstrap_intervals():
    correct = torch.tensor([1] * 70 + [0] * 30)
    result = bootstrap(correct, samples=1000)
    assert result["mean"] == pytest.approx(0.7)
    assert result["ci"][0] < 0.7 < result["ci"][1] and 0.05 < result["ci"][1] - result["ci"][0] < 0.25
    same = bootstrap(correct, correct.clone(), samples=500)
    assert same["mean"] == 0 and same["ci"] == [0.0, 0.0] and same["p_not_better"] == 1.0
    better = correct.clone()
    better[70:90] = 1
    diff = bootstrap(correct, better, samples=1000)
    assert diff["mean"] == pytest.approx(0.2) and diff["ci"][0] > 0 and diff["p_not_better"] == 0.0


def test_shipped_sentiment_task_has_disjoint_splits():
    calibration, test = load_task("sentiment", "calibration"), load_task("sentiment", "test")
    assert len(calibration) == 80 and len(test) == 120
    assert not {i.id for i in calibration.items} & {i.id for i in test.items}
    assert sum(i.answer for i in calibration.items) == 40  # balanced
    assert all(i.options == (" positive", " negative") for i in test.items)
    assert len(load_task("sentiment", "test", limit=30)) == 30
    with pytest.raises(wb.InputError, match="split"):
        load_task("sentiment", "train")


def test_task_files_are_read_as_data(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"id": "a", "split": "test", "prompt": "1+1=", "options": ["2", "3"], "answer": 0}) + "\n")
    assert load_task(str(path), "test").items == [Item("a", "1+1=", ("2", "3"), 0)]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,split,prompt,answer\nx,test,hi,0\n")
    with pytest.raises(wb.InputError, match="options"):
        load_task(str(bad), "test")
    with pytest.raises(wb.InputError, match="unknown task"):
        load_task("nope", "test")


def toy_task(n=6):
    items = []
    for k in range(n):
        prompt = f"Question {k}: is {k} even? Answer:"
        items.append(Item(f"q{k}", prompt, (" yes", " no, it is odd"), k % 2))
    return Task("toy", items, mode="options")


def test_option_scores_are_log_likelihoods_independent_of_batching(tiny):
    task = toy_task(3)
    single = score_task(tiny, task, batch_size=1)
    batched = score_task(tiny, task, batch_size=8)
    torch.testing.assert_close(torch.tensor(batched.scores), torch.tensor(single.scores), rtol=1e-4, atol=1e-4)
    # by hand for item 0, option 1: sum of next-token log-probs of the option's tokens
    prompt = tiny.encode(task.items[0].prompt)[0].tolist()
    option = tiny.tokenizer(" no, it is odd", add_special_tokens=False)["input_ids"]
    logprobs = torch.log_softmax(tiny.logits(torch.tensor([prompt + option]))[0].float(), -1)
    by_hand = sum(float(logprobs[len(prompt) - 1 + k, t]) for k, t in enumerate(option))
    assert single.scores[0][1] == pytest.approx(by_hand, abs=1e-4)
    # calibration interventions are also batch-independent (ACT counts only real queries)
    interventions = wb.mask_heads([]) + zerotuning([(0, 1)], 3.0)
    from workbench.analyses.calibration import act

    interventions += act([(1, 0), (1, 3)], threshold=0.05)
    a = score_task(tiny, task, interventions, batch_size=1)
    b = score_task(tiny, task, interventions, batch_size=8)
    torch.testing.assert_close(torch.tensor(a.scores), torch.tensor(b.scores), rtol=1e-4, atol=1e-4)
    assert torch.tensor(a.scores).sub(torch.tensor(single.scores)).abs().max() > 1e-4


def test_label_mode_scores_the_first_token_at_the_last_position(tiny):
    items = [Item("a", "Pick: A or B? ", ("A", "B"), 0), Item("b", "Longer prompt here. Pick: A or B? ", ("A", "B"), 1)]
    task = Task("labels", items, mode="auto")
    assert resolve_mode(tiny, task) == "label"
    scores = score_task(tiny, task, batch_size=2)
    ids = tiny.encode(items[1].prompt)
    logprobs = torch.log_softmax(tiny.logits(ids)[0, -1].float(), -1)
    a, b = (tiny.tokenizer(x, add_special_tokens=False)["input_ids"][0] for x in "AB")
    assert scores.scores[1] == pytest.approx([float(logprobs[a]), float(logprobs[b])], abs=1e-4)
    assert resolve_mode(tiny, toy_task()) == "options"  # " yes" and " no" share the byte " "


def test_evaluate_reports_paired_difference(tiny):
    task = toy_task(6)
    result = evaluate(tiny, task, zerotuning([(0, 0), (1, 2)], 4.0), samples=200)
    base, cal = result["baseline"], result["calibrated"]
    assert result["difference"]["mean"] == pytest.approx(cal["accuracy"] - base["accuracy"])
    assert base["ci"][0] <= base["accuracy"] <= base["ci"][1]
    assert result["flips"]["fixed"] - result["flips"]["broken"] == round(6 * result["difference"]["mean"])
    assert "calibrated" not in evaluate(tiny, task, (), samples=50)


def test_zerotuning_search_end_to_end_on_tiny(tiny):
    task = toy_task(4)
    data = calibrate_zerotuning(tiny, task, kind="layer", gammas=(4.0,), budget=2, scales=(2.0,))
    # one trial gamma: each layer profiled at 4; groups that lose are retried at 1/4 in the greedy pool
    assert data["method"] == "zerotuning" and len(data["search"]["profile"]) == tiny.shape.num_layers
    profile_table = data["search"]["profile"]
    tried = {step["added"] for step in data["search"]["greedy"] if step["added"]}
    for row in profile_table:
        group = row["candidate"].split("@")[0]
        if row["gain"] < 0 and tried:
            assert f"{group}@4" not in tried
    assert all(name.endswith("@4") or name.endswith("@0.25") for name in tried)
    assert data["calibration"]["calibrated"] >= data["calibration"]["baseline"]
    # the chosen interventions reproduce the reported calibration score
    chosen = wb.interventions_from_json(json.dumps(data))
    from workbench.analyses.calibration import objective

    assert objective(score_task(tiny, task, chosen)) == pytest.approx(data["calibration"]["calibrated"], abs=1e-6)
    assert all(isinstance(i, wb.LogitBias) and i.keys == (0,) for i in chosen)
