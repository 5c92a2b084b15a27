"""The HF runner: an unmodified transformers model whose attention goes through the seam.

``Model`` is what ``workbench.load_model`` returns: encode text, capture statistics, run with
interventions, generate greedily with decode-step capture.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from workbench.adapters import adapter_for
from workbench.capture import Capture
from workbench.devices import DEFAULT_DEVICE
from workbench.runners.seam_run import seam_run
from workbench.seam.attention import instrument
from workbench.seam.interventions import Intervention
from workbench.seam.spec import CaptureSpec, SpecError


def with_cache(hf_model, cache) -> dict:
    """The keyword that passes a KV cache to ``hf_model``'s forward: ``cache`` in transformers 5.x (which
    warns on every decode step about the old name), ``past_key_values`` before."""
    return {_cache_keyword(type(hf_model)): cache}


def cache_of(output):
    """The KV cache a forward returned, read without the deprecated ``past_key_values`` alias."""
    cache = getattr(output, "cache", None) if "cache" in output.keys() else None
    return cache if cache is not None else output["past_key_values"]


@functools.cache
def _cache_keyword(model_class) -> str:
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


class InputError(ValueError):
    """Bad input text or ids; nothing was run or written."""


@dataclass
class Generation:
    prompt_ids: torch.Tensor  # (prompt,)
    new_ids: torch.Tensor  # (new,)
    text: str
    capture: Capture | None


class Model:
    """A loaded model plus its tokenizer, adapter and shape."""

    def __init__(self, name: str, hf_model, tokenizer):
        self.name = name
        self.hf = hf_model
        self.tokenizer = tokenizer
        self.adapter = adapter_for(hf_model)
        self.shape = self.adapter.shape(hf_model)
        self.backends: set[str] = set()  # attention backends the seam ran for this model (see ``backend``)

    def __repr__(self) -> str:
        s = self.shape
        return (
            f"Model({self.name!r}, layers={s.num_layers}, heads={s.num_heads}, kv_heads={s.num_kv_heads}, "
            f"head_dim={s.head_dim}, window={s.max_positions})"
        )

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    @property
    def backend(self) -> str | None:
        """The attention backend(s) used so far ("triton", "pytorch", "sdpa", joined by '+'), for the store."""
        return "+".join(sorted(self.backends)) or None

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    # --- inputs -------------------------------------------------------------------------------

    def encode(self, text: str, *, chat: bool = False, window: int | None = None) -> torch.Tensor:
        """Token ids (1, T) of ``text``; no BOS is added unless ``chat`` applies the chat template."""
        if not isinstance(text, str) or not text.strip():
            raise InputError("the text is empty: give at least one token of input")
        if chat and self.has_chat_template:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        if window is not None:
            ids = ids[:, :window]
        self.check_length(ids.shape[-1])
        return ids

    def check_length(self, length: int) -> None:
        limit = self.shape.max_positions
        if limit is not None and length > limit:
            raise InputError(
                f"the input has {length} tokens but {self.name} has a window of {limit} positions; "
                f"cut it (e.g. --window {limit})"
            )
        if length < 1:
            raise InputError("the input has no tokens")

    def _ids(self, inputs) -> torch.Tensor:
        if isinstance(inputs, str):
            return self.encode(inputs)
        if isinstance(inputs, (list, tuple, dict)) and inputs and any(isinstance(x, str) for x in inputs):
            raise InputError(
                "several texts go through model.capture(texts) (padded batches, one head table per text); "
                "run, logits and generate take one text or a tensor of token ids"
            )
        ids = torch.as_tensor(inputs)
        if ids.ndim == 1:
            ids = ids[None]
        self.check_length(ids.shape[-1])
        return ids

    def tokens(self, ids: torch.Tensor) -> list[str] | None:
        """The token strings of a (1, T) input (None for a batch)."""
        return self.tokenizer.convert_ids_to_tokens(ids[0].tolist()) if ids.shape[0] == 1 else None

    def check_spec(self, spec: CaptureSpec | None, num_tokens: int) -> None:
        """Before running: the spec's layers, heads and exact rows exist for this model and input."""
        if spec is not None:
            spec.validate_for(self.shape.num_layers, self.shape.num_heads, num_tokens=num_tokens)

    # --- runs ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def seam(self, spec: CaptureSpec | None = None, interventions: Sequence[Intervention] = ()):
        """Instrument this model for one block (the HF and nnsight runners; the TransformerLens runner
        instruments its weight-sharing module copy with the same ``instrument``)."""
        with instrument(self.hf, spec, interventions, adapter=self.adapter) as session:
            try:
                yield session
            finally:
                self.backends |= session.ran()

    def _seam_run(self, spec: CaptureSpec | None, interventions: Sequence[Intervention]):
        """``seam_run`` over this model (the HF and nnsight runners)."""
        return seam_run(
            self.hf,
            spec,
            interventions,
            adapter=self.adapter,
            shape=self.shape,
            meta={"model": self.name},
            backends=self.backends,
        )

    def run(
        self,
        inputs,
        spec: CaptureSpec | None = None,
        interventions: Sequence[Intervention] = (),
        attention_mask=None,
        progress: bool = False,
        all_logits: bool = True,
    ):
        """One forward pass. Returns (logits, capture or None).

        ``all_logits=False`` projects only the last position onto the vocabulary (logits (batch, 1, vocab)):
        a long-context capture then needs no (T, vocab) buffer (128k tokens x 128k vocab = 34 GB in bf16)."""
        ids = self._ids(inputs).to(self.device)
        self.check_spec(spec, ids.shape[-1])
        with self._seam_run(spec, interventions) as run:
            if progress:
                from tqdm.auto import tqdm

                layers = self.shape.num_layers
                run.session.progress = tqdm(total=layers, desc="layers", unit="layer", leave=False)
            kwargs = {"attention_mask": attention_mask.to(self.device)} if attention_mask is not None else {}
            if not all_logits:
                kwargs["logits_to_keep"] = 1
            logits = self.hf(input_ids=ids, use_cache=False, **kwargs).logits
        capture = run.capture
        if capture is not None:
            capture.tokens = self.tokens(ids)
        return logits, capture

    def capture(
        self,
        inputs,
        spec: CaptureSpec | None = None,
        interventions: Sequence[Intervention] = (),
        *,
        batch_size: int = 8,
    ) -> Capture:
        """Statistics of one forward pass (default spec: the standard row statistics, all heads).

        ``inputs``: a text, token ids, or several texts (a list, or a {name: text} dict such as
        ``workbench.read_texts("texts/")`` gives). Several texts run ``batch_size`` at a time, right-padded,
        and come back as one capture whose batch axis is the text: ``head_table()`` is the mean over texts,
        ``head_tables()`` one table per text, ``split()`` one capture per text.
        """
        spec = spec or CaptureSpec()
        if not spec.captures_anything:
            raise SpecError(
                "the capture spec asks for nothing: name statistics, key_statistics, rows or pooled_cells"
            )
        if isinstance(inputs, Mapping) or (
            isinstance(inputs, (list, tuple)) and (not inputs or isinstance(inputs[0], str))
        ):
            return self.capture_texts(inputs, spec, interventions, batch_size=batch_size)
        return self.run(inputs, spec, interventions)[1]

    def capture_texts(
        self,
        texts: Sequence[str] | Mapping[str, str],
        spec: CaptureSpec | None = None,
        interventions: Sequence[Intervention] = (),
        *,
        batch_size: int = 8,
        window: int | None = None,
    ) -> Capture:
        """Several texts in right-padded batches; padded positions are masked out of every statistic.
        ``window`` keeps each text's first N tokens."""
        spec = spec or CaptureSpec()
        named = dict(texts) if isinstance(texts, Mapping) else {str(i): t for i, t in enumerate(texts)}
        if not named:
            raise InputError("no texts to capture")
        if spec.pooled_cells or spec.rows or spec.decode_rows:
            raise SpecError(
                "pooled maps and exact rows are per text and do not combine over several texts of different "
                "lengths: capture each text on its own (model.capture(text)), or drop pooled_cells/rows"
            )
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        encoded = {}
        for name, text in named.items():
            try:
                encoded[name] = self.encode(text, window=window)[0]
            except InputError as error:
                raise InputError(f"text {name!r}: {error}") from None
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id or 0
        names = list(encoded)
        parts = []
        for start in range(0, len(names), batch_size):
            group = names[start : start + batch_size]
            width = max(len(encoded[name]) for name in group)
            ids = torch.full((len(group), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(group), width), dtype=torch.long)
            for row, name in enumerate(group):
                ids[row, : len(encoded[name])] = encoded[name]
                mask[row, : len(encoded[name])] = 1
            _, part = self.run(ids, spec, interventions, attention_mask=mask)
            part.lengths = [len(encoded[name]) for name in group]
            part.names = group
            part.batch_tokens = [
                self.tokenizer.convert_ids_to_tokens(encoded[name].tolist()) for name in group
            ]
            parts.append(part)
        capture = Capture.concatenate(parts)
        capture.meta["texts"] = names
        return capture

    def logits(self, inputs, interventions: Sequence[Intervention] = ()) -> torch.Tensor:
        return self.run(inputs, None, interventions)[0]

    def generate(
        self,
        prompt,
        *,
        max_new_tokens: int = 32,
        spec: CaptureSpec | None = None,
        interventions: Sequence[Intervention] = (),
        chat: bool = False,
        stop_at_newline: bool = False,
        progress: bool = False,
    ) -> Generation:
        """Greedy decoding with a KV cache; every prefill and decode step goes through the seam."""
        ids = self.encode(prompt, chat=chat) if isinstance(prompt, str) else self._ids(prompt)
        ids = ids.to(self.device)
        self.check_length(ids.shape[-1] + max_new_tokens)
        eos = self.tokenizer.eos_token_id
        new: list[int] = []
        steps = range(max_new_tokens)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="decode", leave=False)
        with self._seam_run(spec, interventions) as run:
            out = self.hf(input_ids=ids, use_cache=True)
            past = cache_of(out)
            for _ in steps:
                token = int(out.logits[0, -1].argmax())
                new.append(token)
                if token == eos:
                    break
                if stop_at_newline and "\n" in self.tokenizer.decode([token]):
                    break
                if len(new) == max_new_tokens:
                    break
                step = torch.tensor([[token]], device=self.device)
                out = self.hf(input_ids=step, use_cache=True, **with_cache(self.hf, past))
                past = cache_of(out)
        capture = run.capture
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Generation(ids[0].cpu(), torch.tensor(new, dtype=torch.long), text, capture)


def load_model(name_or_path: str = "smollm2-135m", *, device=DEFAULT_DEVICE, dtype=None) -> Model:
    """Load a registered model (``workbench models``), a local checkpoint folder or a HF id.

    ``device``/``dtype``: torch objects or names ("auto", "cuda:1", "bfloat16"; see ``workbench.devices``);
    the default device is auto (CUDA when available); dtype None keeps the loader's default (float32 for the
    embedded models), "auto" gives bfloat16 on CUDA."""
    from workbench.devices import resolve_device, resolve_dtype
    from workbench.models.registry import resolve

    device = resolve_device(device) if isinstance(device, str) else device
    if isinstance(dtype, str):
        dtype = resolve_dtype(dtype, device)
    name, hf_model, tokenizer = resolve(name_or_path, device=device, dtype=dtype)
    return Model(name, hf_model, tokenizer)
