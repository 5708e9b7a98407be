"""models/ssm.py: the diagonal SSM's parallel form against its recurrence, a closed form, causality and order."""
import math

import pytest
import torch

from genailab_core.models.ssm import DiagonalSSM


def random_ssm(channels=3, state=5, seed=0):
    torch.manual_seed(seed)
    ssm = DiagonalSSM(channels, state)
    with torch.no_grad():
        for p in ssm.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return ssm


@pytest.mark.parametrize("times", [[0.0, 2.0, 4.0, 7.0], [0.0, 0.1, 0.15, 1.0, 1.01, 3.0, 3.5]])
def test_the_parallel_form_equals_the_step_by_step_recurrence(times):
    ssm = random_ssm()
    u = torch.randn(4, len(times), 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ssm(u, torch.tensor(times)), ssm.recurrence(u, torch.tensor(times)),
                               atol=1e-5, rtol=1e-5)


def test_a_constant_input_gives_the_geometric_sum_of_the_decay():
    ssm = DiagonalSSM(1, 1)                                    # A = -1, B = 1
    with torch.no_grad():
        ssm.c.fill_(2.0)
        ssm.d.fill_(0.5)
    y = ssm(torch.ones(1, 5, 1), torch.arange(5.0))[0, :, 0]
    expected = [2.0 * sum(math.exp(-(k - j)) for j in range(k + 1)) + 0.5 for k in range(5)]
    torch.testing.assert_close(y, torch.tensor(expected))


def test_outputs_depend_only_on_the_past_and_on_elapsed_time():
    ssm = random_ssm()
    times = torch.tensor([0.0, 1.0, 3.0, 4.0, 8.0])
    u = torch.randn(2, 5, 3)
    changed = u.clone()
    changed[:, 3] += 10.0
    torch.testing.assert_close(ssm(changed, times)[:, :3], ssm(u, times)[:, :3])
    assert not torch.allclose(ssm(changed, times)[:, 3:], ssm(u, times)[:, 3:])
    torch.testing.assert_close(ssm(u, times + 100.0), ssm(u, times))


def test_an_unordered_input_is_refused():
    ssm = DiagonalSSM(2, 4)
    with pytest.raises(ValueError, match="strictly increasing"):
        ssm(torch.randn(1, 3, 2), torch.tensor([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="one time per sequence position"):
        ssm(torch.randn(1, 3, 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(batch, length, 2\)"):
        ssm(torch.randn(3, 2), torch.tensor([0.0, 1.0, 2.0]))
