"""Shared fixtures: tiny untrained models and generators."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)  # tiny tensors: threading costs more than it gives, and CI has 2 cores


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def pytest_report_header(config):
    """Name the CPU kernels torch runs (ATEN_CPU_CAPABILITY picks them: `make test-isa` runs the portable ones)."""
    return f"torch CPU kernels: {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} thread(s)"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Return two random RGB images [2, 3, 8, 8] in [0, 1]: the size of the tiny random image adapters."""
    return torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
