"""Profiles, seeding, settings and the run directory."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import genailab_core as gl
from genailab_core.config import UnknownProfileError, new_run_dir, resolve_profile


def test_auto_profile_reads_env_then_device(monkeypatch):
    monkeypatch.setenv("GENAILAB_PROFILE", "smoke")
    assert resolve_profile("auto") == "smoke"
    monkeypatch.delenv("GENAILAB_PROFILE")
    assert resolve_profile("auto", cuda_available=True) == "full"
    assert resolve_profile("auto", cuda_available=False) == "quick"


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(UnknownProfileError, match="'smoke', 'quick', 'full'"):
        resolve_profile("fast")


def test_unknown_profile_from_env_is_rejected(monkeypatch):
    monkeypatch.setenv("GENAILAB_PROFILE", "turbo")
    with pytest.raises(UnknownProfileError, match="turbo"):
        resolve_profile("auto")


def test_same_seed_gives_same_numbers(tmp_path):
    draws = []
    for _ in range(2):
        gl.setup("smoke", seed=3, run_root=tmp_path, verbose=False)
        draws.append((np.random.rand(3), torch.randn(3), torch.nn.Linear(4, 2).weight.detach().clone()))
    np.testing.assert_array_equal(draws[0][0], draws[1][0])
    assert torch.equal(draws[0][1], draws[1][1]) and torch.equal(draws[0][2], draws[1][2])


def test_pick_uses_profile_fallback_and_overrides(tmp_path):
    run = gl.setup("full", seed=0, run_root=tmp_path, verbose=False)
    cfg = run.pick(smoke=dict(epochs=2), quick=dict(epochs=50, n=10), epochs=None, n=7)
    assert cfg.epochs == 50 and cfg.n == 7                       # full falls back to quick; n overridden
    with pytest.raises(AttributeError, match="epochs"):
        cfg.missing


def test_finish_writes_metrics_json(tmp_path, capsys):
    run = gl.setup("smoke", seed=1, name="demo", run_root=tmp_path, verbose=False)
    run.pick(smoke=dict(epochs=2))
    path = run.finish({"elbo": np.float32(-1.5), "acc": torch.tensor(0.75)})
    record = json.loads(path.read_text())
    assert record["metrics"] == {"elbo": -1.5, "acc": 0.75}
    assert record["profile"] == "smoke" and record["settings"] == {"epochs": 2}
    assert "elbo" in capsys.readouterr().out


def test_run_directories_are_never_reused(tmp_path):
    first, second = new_run_dir("ch", tmp_path), new_run_dir("ch", tmp_path)
    assert first != second and first.exists() and second.exists()


def test_chapters_folder_writes_into_the_books_runs(tmp_path):
    from genailab_core.config import default_runs_root
    (tmp_path / "chapters").mkdir()
    (tmp_path / "_toc.yml").write_text("root: intro\n")
    assert default_runs_root(tmp_path / "chapters") == tmp_path / "runs"
    assert default_runs_root(tmp_path) == tmp_path / "runs"


def test_cpu_threads_from_argument_then_env(monkeypatch, tmp_path):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("GENAILAB_THREADS", "1")
        assert gl.set_cpu_threads() == 1 and torch.get_num_threads() == 1
        run = gl.setup("smoke", name="t", run_root=tmp_path, verbose=False, threads=2)
        assert run.profile == "smoke" and torch.get_num_threads() == 2     # the argument wins
        monkeypatch.setenv("GENAILAB_THREADS", "many")
        with pytest.raises(ValueError, match="GENAILAB_THREADS"):
            gl.set_cpu_threads()
        with pytest.raises(ValueError, match="positive integer"):
            gl.set_cpu_threads(0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: numba cannot raise the thread count")
def test_one_torch_thread_survives_scanpy_hvg_selection():
    """scanpy's seurat_v3 HVG selection runs numba parallel regions, which reset the OpenMP thread count that
    torch shares; set_cpu_threads(1) must still hold afterwards (a fresh process, so numba is not yet loaded)."""
    code = ("import numpy as np, scipy.sparse as sp, anndata as ad, torch\n"
            "from genailab_core.config import set_cpu_threads\n"
            "from genailab_core.data.preprocess import select_hvg\n"
            "set_cpu_threads(1)\n"
            "counts = np.random.default_rng(0).poisson(1.0, (300, 400)).astype(np.float32)\n"
            "select_hvg(ad.AnnData(sp.csr_matrix(counts)), n_top_genes=100, flavor='seurat_v3')\n"
            "print(torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_NUM_THREADS", "GENAILAB_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1"
