"""models/ssm.py: the diagonal SSM's parallel form against its recurrence, a closed form, causality and order."""
import math

import pytest
import torch

from genailab_core.models.ssm import BidirectionalSSM, DiagonalSSM


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
        ssm.log_dt.fill_(0.0)                                  # time scale 1: times in the SSM's own unit
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
    with pytest.raises(ValueError, match="one time label per sequence position"):
        ssm(torch.randn(1, 3, 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(batch, length, 2\)"):
        ssm(torch.randn(3, 2), torch.tensor([0.0, 1.0, 2.0]))


def test_the_time_scale_is_a_change_of_time_unit():
    ssm = random_ssm()
    times = torch.tensor([0.0, 2.0, 4.0, 7.0])
    u = torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ssm.log_dt.fill_(math.log(0.25))
        in_days = ssm(u, times)
        ssm.log_dt.fill_(0.0)
        torch.testing.assert_close(in_days, ssm(u, 0.25 * times))


def test_the_bidirectional_mixer_is_a_forward_and_a_time_reversed_recurrence():
    torch.manual_seed(3)
    times = torch.tensor([0.0, 2.0, 4.0, 7.0])
    mixer = BidirectionalSSM(3, times, state_size=5)
    h = torch.randn(2, 4, 3)
    steps = times / 2.0                                        # in units of the median gap (2 days)
    backward = mixer.backward_ssm.recurrence(h.flip(1), -steps.flip(0)).flip(1)
    torch.testing.assert_close(mixer(h), mixer.forward_ssm.recurrence(h, steps) + backward, atol=1e-5, rtol=1e-5)
    changed = h.clone()
    changed[:, -1] += 5.0                                     # the last day changes the first day's output
    assert not torch.allclose(mixer(changed)[:, 0], mixer(h)[:, 0])


def test_the_bidirectional_mixer_refuses_unordered_times_and_wrong_lengths():
    with pytest.raises(ValueError, match="strictly increasing"):
        BidirectionalSSM(2, [0.0, 4.0, 2.0])
    with pytest.raises(ValueError, match="3 sequence positions"):
        BidirectionalSSM(2, [0.0, 2.0, 4.0])(torch.randn(1, 4, 2))
