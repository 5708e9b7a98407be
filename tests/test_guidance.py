"""classifier_guided_eps (chapter 8): classifier guidance in the noise parameterization, for DDIM.

Against the closed forms of an equal-weight mixture of two Gaussians N(mu_y, s^2 I): x_t | y ~ N(alpha_t mu_y, v_t I)
with v_t = alpha_t^2 s^2 + sigma_t^2, so eps(x_t | y) = sigma_t (x - alpha_t mu_y) / v_t exactly (eps = -sigma score).
"""
import pytest
import torch
from torch import nn

from genailab_core import samplers
from genailab_core.models.guidance import NoiseAwareClassifier, classifier_guided_eps, classifier_guided_score
from genailab_core.schedules import VPCosine, VPLinear

MEANS, SPREAD = torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), 0.5


class MixtureLogits(nn.Module):
    """The exact p(y | x_t, t) of the mixture: logits -(x - alpha mu_y)^2 / (2 v_t)."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def variance(self, t):
        return self.schedule.alpha(t) ** 2 * SPREAD ** 2 + self.schedule.sigma(t) ** 2

    def forward(self, x, t):
        alpha, var = self.schedule.alpha(t)[:, None, None], self.variance(t)[:, None]
        return -((x[:, None] - alpha * MEANS) ** 2).sum(-1) / (2 * var)


def mixture_eps(schedule):
    """The exact unconditional eps = -sigma_t grad log p_t(x) of the mixture."""
    logits = MixtureLogits(schedule)

    def eps(x, t):
        weights = logits(x, t).softmax(-1)                                              # (B, 2)
        alpha, var = schedule.alpha(t)[:, None, None], logits.variance(t)[:, None, None]
        score = (weights[..., None] * -(x[:, None] - alpha * MEANS) / var).sum(1)
        return -schedule.sigma(t)[:, None] * score
    return eps


def conditional_eps(schedule, x, t, y):
    alpha, sigma = schedule.alpha(t)[:, None], schedule.sigma(t)[:, None]
    return sigma * (x - alpha * MEANS[y]) / MixtureLogits(schedule).variance(t)[:, None]


@pytest.mark.parametrize("schedule", [VPLinear(), VPCosine()])
def test_guided_eps_at_scale_one_is_the_class_conditional_eps(schedule):
    classifier = NoiseAwareClassifier(MixtureLogits(schedule), schedule, label_key="y")
    x, t = 3 * torch.randn(64, 2), torch.rand(64) * 0.9 + 0.05
    for y in (0, 1):
        guided = classifier_guided_eps(mixture_eps(schedule), classifier, y=y, scale=1.0, schedule=schedule)
        torch.testing.assert_close(guided(x, t), conditional_eps(schedule, x, t, y))    # Bayes' rule in eps
    unguided = classifier_guided_eps(mixture_eps(schedule), classifier, y=1, scale=0.0, schedule=schedule)
    torch.testing.assert_close(unguided(x, t), mixture_eps(schedule)(x, t))


def test_guided_eps_is_minus_sigma_times_the_guided_score_at_every_scale_and_runs_under_no_grad():
    schedule = VPLinear()
    classifier = NoiseAwareClassifier(MixtureLogits(schedule), schedule, label_key="y")
    x, t = torch.randn(32, 2), torch.rand(32) * 0.9 + 0.05
    y = torch.randint(0, 2, (32,))                                                    # one class per row
    score = lambda x, t: -mixture_eps(schedule)(x, t) / schedule.sigma(t)[:, None]    # noqa: E731
    for scale in (0.5, 3.0):
        with torch.no_grad():                                                         # as inside the samplers
            guided = classifier_guided_eps(mixture_eps(schedule), classifier, y, scale, schedule)(x, t)
        expected = -schedule.sigma(t)[:, None] * classifier_guided_score(score, classifier, y, scale)(x, t)
        torch.testing.assert_close(guided, expected)
    scalar_t = classifier_guided_eps(mixture_eps(schedule), classifier, 1, 2.0, schedule)(x, 0.3)   # a float t
    torch.testing.assert_close(scalar_t, classifier_guided_eps(mixture_eps(schedule), classifier, 1, 2.0,
                                                               schedule)(x, torch.full((32,), 0.3)))


def test_ddim_with_the_guided_eps_samples_the_asked_for_class():
    schedule = VPCosine()
    classifier = NoiseAwareClassifier(MixtureLogits(schedule), schedule, label_key="y")
    t_max = 1 - 1e-3
    start = float(schedule.sigma(torch.tensor(t_max))) * torch.randn(600, 2, generator=torch.Generator().manual_seed(0))
    draws = {scale: samplers.ddim(classifier_guided_eps(mixture_eps(schedule), classifier, 0, scale, schedule),
                                  schedule, start, nfe=60, t_start=t_max, t_end=0.0)
             for scale in (0.0, 1.0, 4.0)}
    assert 0.35 < (draws[0.0][:, 0] < 0).float().mean() < 0.65                        # unguided: both classes
    assert (draws[1.0][:, 0] < 0).float().mean() > 0.99
    torch.testing.assert_close(draws[1.0].mean(0), MEANS[0], atol=0.1, rtol=0)         # the class's mean
    assert draws[4.0][:, 0].std() < draws[1.0][:, 0].std()                             # sharper: less spread


def test_negative_scale_is_refused():
    schedule = VPLinear()
    classifier = NoiseAwareClassifier(MixtureLogits(schedule), schedule, label_key="y")
    with pytest.raises(ValueError, match=">= 0"):
        classifier_guided_eps(mixture_eps(schedule), classifier, 1, -0.5, schedule)
