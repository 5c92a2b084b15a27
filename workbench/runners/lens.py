"""TransformerLens 4.x runner: a ``TransformerBridge`` around the same HF model, attention via the seam.

For RoPE families the bridge re-implements attention eagerly (it materialises every T x T pattern).
During a workbench run each bridge attention component instead delegates to its original HF module
(the bridge's own ``AttentionBridge.forward``: hook_in -> HF module -> hook_out), and the HF module
calls the seam. The override is per instance, owned by a context manager and removed on exit.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Sequence

import torch

from workbench.capture import Capture
from workbench.runners.hf import Model
from workbench.seam.interventions import Intervention
from workbench.seam.spec import CaptureSpec


@contextlib.contextmanager
def delegate_attention(bridge):
    """Make every bridge attention component call its HF module (and so the seam) for this block."""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    patched = []
    try:
        for block in bridge.blocks:
            component = block.attn
            if (
                isinstance(component, AttentionBridge)
                and type(component).forward is not AttentionBridge.forward
            ):
                component.__dict__["forward"] = types.MethodType(AttentionBridge.forward, component)
                patched.append(component)
        yield
    finally:
        for component in patched:
            component.__dict__.pop("forward", None)


class LensRunner:
    def __init__(self, model: Model):
        try:
            from transformer_lens.model_bridge import TransformerBridge
        except ImportError as error:  # pragma: no cover
            raise ImportError("the TransformerLens runner needs `pip install transformer-lens>=4`") from error
        self.model = model
        existing = getattr(model, "lens_bridge", None)
        if existing is not None:  # one bridge per loaded model: booting twice would wrap the wrappers
            self.bridge = existing
            return
        self.bridge = TransformerBridge.boot_transformers(
            model.name if "/" in model.name else "workbench/" + model.name,
            hf_model=model.hf,
            tokenizer=model.tokenizer,
            device=str(model.device),
        )
        # the bridge wraps model.hf in place; every seam run on this model (any runner) must delegate
        model.run_contexts.append(lambda: delegate_attention(self.bridge))
        model.lens_bridge = self.bridge

    def run(self, inputs, spec: CaptureSpec | None = None, interventions: Sequence[Intervention] = ()):
        ids = self.model._ids(inputs).to(self.model.device)
        with torch.no_grad(), self.model.seam(spec, interventions) as session:
            logits = self.bridge(ids)
            session.check_fired()
        capture = None
        if spec is not None and spec.captures_anything:
            capture = Capture.from_records(
                self.model.shape, session.records, meta={"spec": spec.to_dict(), "runner": "lens"}
            )
        return logits, capture
