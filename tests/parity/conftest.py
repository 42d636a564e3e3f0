"""Fixtures shared by the parity tests."""

import pytest
import torch

from tests import hf_cache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty, offline Hugging Face Hub cache (tests/hf_cache.py lays repositories into it)."""
    torch.set_num_threads(2)
    hf_cache.use_cache(monkeypatch, tmp_path / "hub")
    return tmp_path / "hub"
