"""Greedy generation captures every decode step; decode rows equal a full forward over the same tokens."""

import torch

import workbench as wb


def test_decode_rows_match_full_forward(tiny):
    prompt = "Decode-step capture: "
    spec = wb.CaptureSpec(statistics=("entropy", "argmax", "sink_mass"), decode_rows=True)
    gen = tiny.generate(prompt, max_new_tokens=8, spec=spec)
    n_prompt, n_new = len(gen.prompt_ids), len(gen.new_ids)
    assert n_new == 8
    cap = gen.capture
    # every prefill row and one row per decode step (the last generated token is never fed back)
    assert list(cap.positions) == list(range(n_prompt + n_new - 1))
    full_ids = torch.cat([gen.prompt_ids, gen.new_ids[:-1]])[None]
    _, full = tiny.run(full_ids, wb.CaptureSpec(statistics=("entropy", "argmax", "sink_mass"), rows=(-1,)))
    torch.testing.assert_close(cap.row["entropy"], full.row["entropy"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cap.row["sink_mass"], full.row["sink_mass"], rtol=1e-4, atol=1e-5)
    assert cap.decode_rows.shape[:4] == (1, n_new - 1, 2, 4)
    last = full.rows[full_ids.shape[-1] - 1]
    torch.testing.assert_close(cap.decode_rows[:, -1], last, rtol=1e-4, atol=1e-6)
    # the generated token at each step is the argmax of the logits of the previous position
    logits = tiny.logits(full_ids)
    assert torch.equal(logits[0, n_prompt - 1 :].argmax(-1), gen.new_ids)
