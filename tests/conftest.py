"""Shared test set-up: real data from ../shared/data, downloads off, data sets read once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("GENAILAB_DATA", str(REPO.parent / "shared" / "data"))
os.environ["GENAILAB_OFFLINE"] = "1"
if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The verified copies (``$GENAILAB_DATA``); tests that need them are skipped without them."""
    root = Path(os.environ["GENAILAB_DATA"])
    if not (root / "PROVENANCE.md").is_file():
        pytest.skip(f"No data at GENAILAB_DATA={root}; set it to the shared data folder to run real-data tests.")
    return root


def _load(name: str, **kwargs):
    from genailab_core.data import load_dataset

    return load_dataset(name, **kwargs)


@pytest.fixture(scope="session")
def pbmc3k(data_root):
    return _load("pbmc3k")


@pytest.fixture(scope="session")
def pbmc3k_all(data_root):
    return _load("pbmc3k", labelled_only=False)


@pytest.fixture(scope="session")
def kang_ifnb1k(data_root):
    return _load("kang2018_ifnb1k")


@pytest.fixture(scope="session")
def kang_muscat(data_root):
    return _load("kang2018_muscat")


@pytest.fixture(scope="session")
def norman(data_root):
    return _load("norman2019_subset")


@pytest.fixture(scope="session")
def norman_gi(data_root):
    return _load("norman2019_gi")


@pytest.fixture(scope="session")
def papalexi(data_root):
    return _load("papalexi2021")


@pytest.fixture(scope="session")
def paul15(data_root):
    return _load("paul15")


@pytest.fixture(scope="session")
def bodymap2(data_root):
    return _load("bodymap2")


@pytest.fixture(scope="session")
def wang2008(data_root):
    return _load("wang2008")


@pytest.fixture
def one_thread():
    """torch on one CPU thread for the test (results that must not depend on thread scheduling)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
