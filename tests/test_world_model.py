"""models/world_model.py: DreamerV3's KL terms against torch, the RSSM against the Kalman filter on a
linear-Gaussian system, NB training and imagined action effects against a simulator, and the errors."""
import math

import numpy as np
import pytest
import scipy.stats
import torch
from scipy.linalg import solve_discrete_lyapunov
from torch.distributions import Normal, kl_divergence

import genailab_core as gl
from genailab_core.models.world_model import RSSM, balanced_kl, check_time_labels, gaussian_kl, time_step_actions


def random_normal(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return Normal(torch.randn(shape, generator=g), 0.2 + torch.rand(shape, generator=g))


# -- KL terms ---------------------------------------------------------------------------------------------
def test_the_kl_terms_equal_torch_kl_divergence():
    q, p = random_normal((64, 5, 3), 0), random_normal((64, 5, 3), 1)
    exact = kl_divergence(q, p).sum(-1)                                        # (64, 5): per time step
    torch.testing.assert_close(gaussian_kl(q, p), exact)
    for free in (0.0, 1.0, 3.0):
        dynamics, representation = balanced_kl(q, p, free_nats=free)
        torch.testing.assert_close(dynamics, exact.clamp(min=free))            # max(free, KL[sg(q) || p])
        torch.testing.assert_close(representation, exact.clamp(min=free))      # max(free, KL[q || sg(p)])
    assert (exact < 1.0).any() and (exact > 3.0).any()                         # the clamps are exercised


def kl_leaves(seed):
    q, p = random_normal((32, 4), seed), random_normal((32, 4), seed + 1)
    leaves = [t.clone().requires_grad_() for t in (q.loc, q.scale, p.loc, p.scale)]
    return leaves, Normal(*leaves[:2]), Normal(*leaves[2:])


def test_kl_balancing_sends_each_term_to_one_side_only():
    leaves, q, p = kl_leaves(2)
    dynamics, _ = balanced_kl(q, p, free_nats=0.0)
    dynamics.sum().backward()
    assert leaves[0].grad is None and leaves[1].grad is None                   # L_dyn: nothing to q
    p_loc, p_scale = leaves[2].detach().requires_grad_(), leaves[3].detach().requires_grad_()
    reference = kl_divergence(Normal(leaves[0].detach(), leaves[1].detach()), Normal(p_loc, p_scale)).sum()
    for grad, exact in zip(leaves[2:], torch.autograd.grad(reference, [p_loc, p_scale])):
        torch.testing.assert_close(grad.grad, exact)
    leaves, q, p = kl_leaves(2)
    _, representation = balanced_kl(q, p, free_nats=0.0)
    representation.sum().backward()
    assert leaves[2].grad is None and leaves[3].grad is None                   # L_rep: nothing to p
    q_loc, q_scale = leaves[0].detach().requires_grad_(), leaves[1].detach().requires_grad_()
    reference = kl_divergence(Normal(q_loc, q_scale), Normal(leaves[2].detach(), leaves[3].detach())).sum()
    for grad, exact in zip(leaves[:2], torch.autograd.grad(reference, [q_loc, q_scale])):
        torch.testing.assert_close(grad.grad, exact)


def test_free_nats_stop_the_pull_below_the_threshold():
    leaves, q, p = kl_leaves(4)
    kl = gaussian_kl(q, p).detach()
    free = float(kl.median())
    dynamics, _ = balanced_kl(q, p, free_nats=free)
    dynamics.sum().backward()
    below = kl < free
    assert below.any() and (~below).any()
    assert (leaves[2].grad[below] == 0).all() and (leaves[2].grad[~below].abs().sum(-1) > 0).all()


def test_in_the_model_l_dyn_trains_only_the_prior_and_l_rep_only_the_posterior():
    """One time step, so that the posterior's sample does not feed a later prior through h (over a sequence
    L_dyn trains the encoder through h_{t+1} = GRU(h_t, z_t ~ q), as in DreamerV3)."""
    torch.manual_seed(0)
    model = RSSM(3, n_actions=2, n_latent=4, n_deterministic=8, n_hidden=16, free_nats=0.0)
    x, actions = torch.randn(5, 1, 3), torch.zeros(5, 0, dtype=torch.long)

    def grads(term):
        model.zero_grad(set_to_none=True)
        states = model.observe(x, actions)
        balanced_kl(states.posterior, states.prior, model.free_nats)[term].sum().backward()
        norm = lambda net: sum(float(p.grad.abs().sum()) for p in net.parameters() if p.grad is not None)
        return norm(model.prior_net), norm(model.posterior_net) + norm(model.obs_encoder)

    prior_grad, posterior_grad = grads(0)                                       # L_dyn
    assert prior_grad > 0 and posterior_grad == 0
    prior_grad, posterior_grad = grads(1)                                       # L_rep
    assert prior_grad == 0 and posterior_grad > 0


# -- the linear-Gaussian system and its Kalman filter ------------------------------------------------------
ANGLE, DECAY, Q_VAR, R_VAR = 0.4, 0.95, 0.1, 0.3
A = DECAY * np.array([[math.cos(ANGLE), -math.sin(ANGLE)], [math.sin(ANGLE), math.cos(ANGLE)]])
Q, R = Q_VAR * np.eye(2), R_VAR * np.eye(2)
STATIONARY = solve_discrete_lyapunov(A, Q)                                       # S = A S A^T + Q


def simulate_linear_gaussian(n, length, seed):
    """z_0 ~ N(0, S), z_{t+1} = A z_t + N(0, Q), x_t = z_t + N(0, R): (n, length, 2)."""
    rng = np.random.default_rng(seed)
    z, xs = rng.multivariate_normal(np.zeros(2), STATIONARY, size=n), []
    for t in range(length):
        if t > 0:
            z = z @ A.T + rng.multivariate_normal(np.zeros(2), Q, size=n)
        xs.append(z + rng.multivariate_normal(np.zeros(2), R, size=n))
    return np.stack(xs, 1)


def kalman_one_step(x):
    """Kalman filter with the true parameters: E[x_{t+1} | x_{<=t}] for t < L - 1, (n, L - 1, 2), and the
    expected squared error of each, trace(P_{t+1|t} + R), (L - 1,)."""
    mean, cov, predictions, expected = np.zeros(x.shape[::2]), STATIONARY.copy(), [], []
    for t in range(x.shape[1] - 1):
        gain = cov @ np.linalg.inv(cov + R)                                     # update with x_t
        mean, cov = mean + (x[:, t] - mean) @ gain.T, (np.eye(2) - gain) @ cov
        mean, cov = mean @ A.T, A @ cov @ A.T + Q                                # predict z_{t+1}
        predictions.append(mean)
        expected.append(np.trace(cov + R))
    return np.stack(predictions, 1), np.array(expected)


def test_the_reference_kalman_error_matches_its_own_covariance():
    x = simulate_linear_gaussian(4000, 12, seed=3)
    predictions, expected = kalman_one_step(x)
    mse_per_step = ((predictions - x[:, 1:]) ** 2).sum(-1).mean(0)              # summed over the 2 dims
    np.testing.assert_allclose(mse_per_step, expected, rtol=0.06)


def test_one_step_prediction_reaches_the_kalman_filter_error(one_thread):
    length = 12
    train, test = simulate_linear_gaussian(2048, length, seed=0), simulate_linear_gaussian(1024, length, seed=1)
    kalman = float(((kalman_one_step(test)[0] - test[:, 1:]) ** 2).mean())
    last_observation = float(((test[:, :-1] - test[:, 1:]) ** 2).mean())
    torch.manual_seed(0)
    model = RSSM(2, n_actions=1, n_latent=2, n_deterministic=32, n_hidden=64)
    x = torch.tensor(train, dtype=torch.float32)
    stay = torch.zeros(64, length - 1, dtype=torch.long)
    gl.fit(model, [{"x": x[i:i + 64], "actions": stay} for i in range(0, len(x), 64)], steps=250, lr=3e-3,
           progress=False)
    predicted = model.predict_next(torch.tensor(test, dtype=torch.float32), stay[:1].expand(len(test), -1))
    rssm = float(((predicted.numpy() - test[:, 1:]) ** 2).mean())
    print(f"one-step MSE: RSSM {rssm:.4f}, Kalman {kalman:.4f}, last observation {last_observation:.4f}")
    assert last_observation > 1.4 * kalman                                      # the task needs the dynamics
    assert rssm < 1.15 * kalman
    assert rssm > 0.97 * kalman                                                 # nothing beats the optimal filter


# -- counts, actions and imagination -----------------------------------------------------------------------
N_GENES, PROGRAM = 24, 8


def simulate_counts(n, length, seed):
    """A known simulator: state s_t in R^2, action 0 raises program 1 (genes 0-7) and action 1 program 2
    (genes 8-15) by one unit of log-expression per step; counts NB(l * softmax(W s), theta = 10)."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.zeros(2, N_GENES)
    weights[0, :PROGRAM], weights[1, PROGRAM:2 * PROGRAM] = 1.0, 1.0
    state = 0.3 * torch.randn(n, 2, generator=g)
    actions = torch.randint(0, 2, (n, length - 1), generator=g)
    states = [state]
    for t in range(length - 1):
        state = state + torch.nn.functional.one_hot(actions[:, t], 2).float()
        states.append(state)
    rho = torch.softmax(torch.stack(states, 1) @ weights, -1)                   # (n, L, genes)
    library = torch.randint(400, 1200, (n, length, 1), generator=g).float()
    mu, theta = library * rho, torch.full((N_GENES,), 10.0)
    counts = torch.poisson(torch.distributions.Gamma(theta, theta / mu).sample())
    return counts, actions


def test_nb_training_lowers_the_loss_and_imagined_actions_move_the_right_program(one_thread):
    torch.manual_seed(1)
    counts, actions = simulate_counts(512, 4, seed=0)
    model = RSSM(N_GENES, n_actions=3, n_latent=4, n_deterministic=32, n_hidden=64, likelihood="nb",
                 action_names=["program 1 up", "program 2 up", "never used"])
    batches = [{"x": counts[i:i + 64], "actions": actions[i:i + 64]} for i in range(0, 512, 64)]
    history = gl.fit(model, batches, steps=240, lr=3e-3, progress=False)
    assert history["train_loss"].iloc[-1] < 0.9 * history["train_loss"].iloc[0]
    assert model.action_counts[:2].min() > 0 and model.action_counts[2] == 0

    start = model.observe(counts[:16], actions[:16], sample=False).last()
    rollout = model.imagine(*start, torch.zeros(16, 5, dtype=torch.long))
    assert rollout.h.shape == (16, 5, 32) and rollout.z.shape == (16, 5, 4)
    assert rollout.prior.loc.shape == rollout.prior.scale.shape == (16, 5, 4)
    library = torch.full((16, 1, 1), 1000.0)

    def log_program_ratio(action):                   # log(program 1 / program 2) after one imagined step
        future = torch.full((16, 1), action, dtype=torch.long)
        mean = model.forecast(counts[:16, :3], actions[:16, :2], future, library)[:, 0]
        return (mean[:, :PROGRAM].sum(-1) / mean[:, PROGRAM:2 * PROGRAM].sum(-1)).log()

    effect = log_program_ratio(0) - log_program_ratio(1)                      # truth: +1 - (-1) = 2 for every cell
    print(f"imagined effect of action 0 vs 1 on log(program 1 / program 2): {effect.mean():.3f} (truth 2)")
    assert (effect - 2.0).abs().mean() < 0.3
    samples = model.forecast(counts[:4, :3], actions[:4, :2], torch.zeros(4, 2, dtype=torch.long),
                             torch.full((4, 1, 1), 1000.0), n_samples=3)
    assert samples.shape == (3, 4, 2, N_GENES)
    torch.testing.assert_close(samples.sum(-1), torch.full((3, 4, 2), 1000.0))  # means sum to the library


def test_the_nb_decoder_is_the_negative_binomial_of_scipy():
    torch.manual_seed(0)
    model = RSSM(6, n_actions=1, n_latent=2, n_deterministic=4, n_hidden=8, likelihood="nb")
    with torch.no_grad():
        model.log_theta.copy_(torch.linspace(-1.0, 2.0, 6))
    h, z, library = torch.randn(3, 4), torch.randn(3, 2), torch.tensor([[50.0], [200.0], [1000.0]])
    px = model.decode(h, z, library)
    x = torch.poisson(px.mean.detach())
    theta = model.log_theta.exp().detach().numpy()
    mu = px.mean.detach().numpy()
    expected = scipy.stats.nbinom.logpmf(x.numpy(), theta, theta / (theta + mu))
    np.testing.assert_allclose(px.log_prob(x).detach().numpy(), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(px.mean.sum(-1, keepdim=True), library)


# -- time labels -------------------------------------------------------------------------------------------
def test_time_labels_become_the_actions_of_their_steps():
    steps = [(0, 2), (2, 4), (4, 7)]
    assert time_step_actions([0.0, 2.0, 4.0, 7.0], steps).tolist() == [0, 1, 2]
    assert time_step_actions([2.0, 4.0], steps).tolist() == [1]
    torch.manual_seed(0)
    model = RSSM(3, steps=steps, n_latent=2, n_deterministic=8, n_hidden=8)
    assert model.n_actions == 3 and model.action_names == ["0 -> 2", "2 -> 4", "4 -> 7"]
    x = torch.randn(5, 4, 3)
    model.eval()
    torch.manual_seed(1)
    with_times = model.loss({"x": x, "times": torch.tensor([0.0, 2.0, 4.0, 7.0])}).loss
    torch.manual_seed(1)
    with_actions = model.loss({"x": x, "actions": torch.tensor([[0, 1, 2]]).expand(5, -1)}).loss
    torch.testing.assert_close(with_times, with_actions)


def test_time_labels_that_are_not_ordered_are_refused():
    with pytest.raises(ValueError, match="strictly increasing"):
        check_time_labels([0.0, 4.0, 2.0, 7.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        check_time_labels([0.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="one time label per sequence position"):
        check_time_labels([0.0, 2.0], length=3)
    with pytest.raises(ValueError, match="strictly increasing"):
        time_step_actions([0.0, 4.0, 2.0], [(0, 2), (2, 4), (4, 2)])
    model = RSSM(3, steps=[(0, 2), (2, 4), (4, 7)], n_latent=2, n_deterministic=8, n_hidden=8)
    with pytest.raises(ValueError, match="strictly increasing"):
        model.loss({"x": torch.randn(2, 3, 3), "times": torch.tensor([4.0, 2.0, 0.0])})
    with pytest.raises(ValueError, match=r"not among the model's steps"):
        model.loss({"x": torch.randn(2, 3, 3), "times": torch.tensor([0.0, 4.0, 7.0])})
    check_time_labels([0.0, 2.0, 4.0, 7.0], length=4)                         # ordered: accepted


def test_a_rollout_under_an_action_it_never_saw_is_refused():
    torch.manual_seed(0)
    model = RSSM(3, n_actions=3, n_latent=2, n_deterministic=8, n_hidden=8,
                 action_names=["day 0 -> 2", "day 2 -> 4", "day 4 -> 7"])
    x = torch.randn(4, 3, 3)
    model.loss({"x": x, "actions": torch.tensor([[0, 1]]).expand(4, -1)})     # a training step sees 0 and 1
    h, z = torch.zeros(4, 8), torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"Unknown action id\(s\) \[3, 5\].*valid ids 0\.\.2"):
        model.imagine(h, z, torch.tensor([[0, 3], [5, 1], [0, 0], [1, 1]]))
    with pytest.raises(ValueError, match=r"never saw action\(s\) \[2\] \(2: 'day 4 -> 7'\).*seen: \[0, 1\]"):
        model.imagine(h, z, torch.tensor([[0, 2]] * 4))
    with pytest.raises(ValueError, match=r"never saw action"):
        model.forecast(x, torch.tensor([[0, 1]] * 4), torch.tensor([[2]] * 4))
    with pytest.raises(ValueError, match=r"Unknown action id"):
        model.loss({"x": x, "actions": torch.tensor([[0, 3]] * 4)})
    assert model.imagine(h, z, torch.tensor([[0, 1]] * 4)).z.shape == (4, 2, 2)    # seen actions roll out
    assert model.imagine(h, z, torch.tensor([[2]] * 4), allow_unseen=True).z.shape == (4, 1, 2)
    model.eval()
    model.loss({"x": x, "actions": torch.tensor([[2, 2]] * 4)})                 # evaluation does not count
    with pytest.raises(ValueError, match=r"never saw action"):
        model.imagine(h, z, torch.tensor([[2]] * 4))


def test_bad_shapes_and_settings_are_refused():
    with pytest.raises(ValueError, match="likelihood"):
        RSSM(3, n_actions=1, likelihood="poisson")
    with pytest.raises(ValueError, match="at least one action"):
        RSSM(3)
    model = RSSM(3, n_actions=2, n_latent=2, n_deterministic=8, n_hidden=8)
    with pytest.raises(ValueError, match=r"shape \(batch, L, 3\)"):
        model.observe(torch.randn(2, 3, 4), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"integer actions of shape \(2, 2\)"):
        model.observe(torch.randn(2, 3, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="without steps"):
        model.loss({"x": torch.randn(2, 3, 3), "times": torch.tensor([0.0, 1.0, 2.0])})
    nb = RSSM(3, n_actions=1, n_latent=2, n_deterministic=8, n_hidden=8, likelihood="nb")
    with pytest.raises(ValueError, match="library"):
        nb.decode(torch.zeros(1, 8), torch.zeros(1, 2))
