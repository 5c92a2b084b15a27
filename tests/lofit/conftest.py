import pytest
import torch

import workbench as wb


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return wb.load_model("tiny-gqa")
