"""CPU check of the LoFiT all-heads control's step size (the GPU run of 2026-12-07 diverged at the unscaled lr).

Trains the shared-budget control (K = 8: 512 coordinates mapped onto every head) on TruthfulQA fold 0 for a
few steps with the unscaled learning rate and with ``train_shared_budget``'s default scale, and writes
both validation-loss curves. A smoke-sized check of direction only (few items and steps, CPU):

    python3 benchmarks/lofit_all_heads_check.py --data ../shared/data --out docs/results/data/lofit/cpu-all-heads-lr/check.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from lofit_gpu import truthfulqa_folds  # noqa: E402

from workbench.jsonfiles import write_json  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train", type=int, default=48)
    p.add_argument("--val", type=int, default=16)
    p.add_argument("--steps", type=int, default=18)
    p.add_argument("--eval-every", type=int, default=6)
    p.add_argument("--k", type=int, default=8)
    args = p.parse_args()

    from workbench import load_model
    from workbench.analyses.lofit.train import TrainConfig, train_shared_budget

    torch.manual_seed(0)
    model = load_model("smollm2-135m", device="cpu", dtype="float32")
    split = truthfulqa_folds(args.data)[0]
    train = [item for _, item in split["train"]][: args.train]
    val = [item for _, item in split["val"]][: args.val]
    config = TrainConfig.defaults("truthfulqa", 2, steps=args.steps, eval_every=args.eval_every)
    budget = args.k * model.shape.head_dim
    runs = []
    for scale in (1.0, None):
        started = time.time()
        _, log, _ = train_shared_budget(model, budget, train, config, val_items=val, projection_seed=1000, progress=False,
                                        lr_scale=scale)  # fmt: skip
        runs.append({"lr_scale": "unscaled (1.0)" if scale else "default sqrt(budget / N)", "val": log["val"],
                     "selected_step": log.get("selected_step"), "seconds": round(time.time() - started, 1)})  # fmt: skip
        print(runs[-1], flush=True)
    write_json(args.out, {"model": "smollm2-135m", "device": "cpu", "budget": budget, "lr": config.lr,
                          "train_items": len(train), "val_items": len(val), "steps": args.steps, "runs": runs})  # fmt: skip


if __name__ == "__main__":
    main()
