"""Views of a cell that respect counts: binomial thinning (a shallower sequencing of the same library) and
masking of gene programs; the log-normalization the encoder reads."""
import numpy as np
import pytest
import scipy.stats as st
import torch

from genailab_core.data.preprocess import log_normalize_counts
from genailab_core.data.views import binomial_thin, log_normalized, mask_programs


def counts(n=400, g=50, seed=0):
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.negative_binomial(2, 0.2, size=(n, g)), dtype=torch.float32)   # mean 8 per entry


def test_thinning_keeps_integers_and_never_adds_counts():
    x = counts()
    y = binomial_thin(x, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(y, y.round()) and (y >= 0).all() and (y <= x).all()
    assert ((x == 0) <= (y == 0)).all()                                       # a zero stays zero


def test_thinning_scales_the_expected_library():
    x = counts(n=2000)
    for p in (0.1, 0.5, 0.9):
        y = binomial_thin(x, p, torch.Generator().manual_seed(1))
        ratio = (y.sum() / x.sum()).item()                                    # sum of Binomial(x_i, p) over entries
        se = np.sqrt(p * (1 - p) / x.sum().item())                           # s.d. of the kept fraction
        assert abs(ratio - p) < 4 * se, (p, ratio)
    cells = binomial_thin(x, 0.5, torch.Generator().manual_seed(2)).sum(1) / x.sum(1)
    assert abs(cells.mean().item() - 0.5) < 0.01                              # per cell library scaled too


def test_thinned_entries_follow_the_binomial():
    x = torch.full((20000, 1), 7.0)
    y = binomial_thin(x, 0.3, torch.Generator().manual_seed(3)).squeeze(1).numpy().astype(int)
    observed = np.bincount(y, minlength=8)[:8]
    expected = st.binom(7, 0.3).pmf(np.arange(8)) * len(y)
    assert st.chisquare(observed, expected).pvalue > 1e-3


def test_thinning_per_cell_probabilities():
    x = counts(n=2)
    p = torch.tensor([0.0, 1.0])
    y = binomial_thin(x, p)
    assert y[0].sum() == 0 and torch.equal(y[1], x[1])


@pytest.mark.parametrize("bad, match", [(lambda x: x + 0.5, "integers"), (lambda x: -x, "integers"),
                                        (lambda x: x[0], "matrix")])
def test_thinning_rejects_what_are_not_counts(bad, match):
    with pytest.raises(ValueError, match=match):
        binomial_thin(bad(counts(n=3)), 0.5)


@pytest.mark.parametrize("p", [1.5, -0.1, torch.tensor([0.5, 0.5])])
def test_thinning_rejects_bad_probabilities(p):
    with pytest.raises(ValueError, match="p must|probabilities"):
        binomial_thin(counts(n=3), p)


def test_masking_zeroes_whole_programs():
    x = counts(n=100, g=12) + 1                                               # no zeros before masking
    programs = torch.arange(12) % 4                                           # 4 programs of 3 genes
    y, masked = mask_programs(x, programs, 2, torch.Generator().manual_seed(0))
    assert masked.shape == (100, 4) and torch.equal(masked.sum(1), torch.full((100,), 2.0))
    zeroed = (y == 0)                                                          # (cells, genes)
    assert torch.equal(zeroed, masked[:, programs].bool())                    # exactly the masked programs' genes
    assert torch.equal(y[~zeroed], x[~zeroed])
    assert (masked.mean(0) > 0.3).all()                                       # every program gets masked sometimes


def test_masking_rejects_bad_programs():
    x = counts(n=3, g=6)
    with pytest.raises(ValueError, match="one label per gene"):
        mask_programs(x, torch.zeros(5, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="n_masked"):
        mask_programs(x, torch.arange(6) % 2, 3)


def test_log_normalized_matches_the_package_numpy_version():
    x = counts(n=30)
    x[0] = 0                                                                  # an empty cell stays 0
    np.testing.assert_allclose(log_normalized(x).numpy(), log_normalize_counts(x.numpy()), rtol=1e-5, atol=1e-6)


def test_ward_gene_programs_recover_co_expressed_blocks_of_unequal_size():
    from sklearn.metrics import adjusted_rand_score

    from genailab_core.models.tokens import gene_programs
    rng = np.random.default_rng(0)
    factors = rng.standard_normal((300, 4))                                   # 4 hidden programs
    truth = np.repeat(np.arange(4), [5, 10, 15, 20])                          # unequal sizes
    expression = factors[:, truth] + 0.5 * rng.standard_normal((300, 50))
    assert adjusted_rand_score(truth, gene_programs(expression, 4, linkage="ward")) == 1.0
    with pytest.raises(ValueError, match="n_programs"):
        gene_programs(expression, 51, linkage="ward")
