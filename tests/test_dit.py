"""models/dit.py: adaLN-Zero blocks and the Diffusion Transformer (Peebles & Xie 2023)."""
import copy

import anndata as ad
import numpy as np
import pytest
import torch

import genailab_core as gl
from genailab_core.models import Diffusion, FlowMatching
from genailab_core.models.dit import AdaLNZeroBlock, DiT
from genailab_core.models.ssm import BidirectionalSSM
from genailab_core.models.tokens import GeneTrackTokens, GroupTokens, SetTokens, StepTokens, gene_programs
from genailab_core.schedules import VPCosine


def test_an_adaln_zero_block_is_exactly_the_identity_at_initialisation():
    torch.manual_seed(0)
    block = AdaLNZeroBlock(width=32, n_heads=4, cond_dim=16)
    h, c = torch.randn(5, 7, 32), torch.randn(5, 16)
    assert torch.equal(block(h, c), h)


def test_a_dit_outputs_zero_at_initialisation_and_only_the_named_layers_start_at_zero():
    torch.manual_seed(0)
    net = DiT(n_in=24, tokens=6, width=32, n_layers=2, n_heads=4, n_categories=[3])
    out = net(torch.randn(8, 24), torch.rand(8), torch.tensor([[0], [1], [2], [-1]] * 2))
    assert torch.equal(out, torch.zeros(8, 24))
    zero = {n for n, p in net.named_parameters() if p.abs().max() == 0}
    assert zero == {f"blocks.{i}.modulation.1.{w}" for i in range(2) for w in ("weight", "bias")} | \
        {"final_modulation.1.weight", "final_modulation.1.bias", "tokens.out_weight", "tokens.out_bias",
         "tokens.in_bias"} | \
        {n for n, _ in net.named_parameters() if n.endswith("in_proj_bias") or n.endswith("out_proj.bias")}


def test_training_moves_the_gates_off_zero_so_the_blocks_stop_being_the_identity():
    torch.manual_seed(0)
    x = torch.randn(256, 12)
    model = FlowMatching(DiT(n_in=12, tokens=4, width=16, n_layers=1, n_heads=2))
    gl.fit(model, gl.data.CountBatches(ad.AnnData(x.numpy()), batch_size=64, seed=0), steps=20, lr=1e-2,
           progress=False)
    block = model.network.blocks[0]
    h, c = torch.randn(3, 4, 16), torch.randn(3, 16)
    assert not torch.allclose(block(h, c), h)
    assert model.network(x[:4], torch.full((4,), 0.5)).abs().max() > 0


@pytest.mark.parametrize("n_in, n_tokens", [(20, 3), (20, 0), (7, 2)])
def test_a_token_count_that_does_not_divide_the_input_is_refused(n_in, n_tokens):
    with pytest.raises(ValueError, match="does not divide"):
        DiT(n_in=n_in, tokens=n_tokens)


def test_a_dit_rejects_wrong_shapes_and_codes_without_conditions():
    net = DiT(n_in=8, tokens=4, width=16, n_layers=1, n_heads=2)
    with pytest.raises(ValueError, match=r"shape \(batch, 8\)"):
        net(torch.randn(3, 9), torch.rand(3))
    with pytest.raises(ValueError, match="without conditions"):
        net(torch.randn(3, 8), torch.rand(3), torch.zeros(3, 1, dtype=torch.long))


def test_attention_maps_are_row_stochastic_per_layer_and_leave_no_state():
    torch.manual_seed(0)
    net = DiT(n_in=12, tokens=6, width=16, n_layers=3, n_heads=4)
    maps = net.attention_maps(torch.randn(5, 12), torch.rand(5))
    assert maps.shape == (3, 5, 6, 6)
    torch.testing.assert_close(maps.sum(-1), torch.ones(3, 5, 6))
    assert all(not b.keep_attention and b.last_attention is None for b in net.blocks)


def test_a_conditional_dit_trains_in_a_diffusion_model_with_classifier_free_guidance_and_samples():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    x = (rng.standard_normal((300, 8)) + 3 * labels[:, None]).astype(np.float32)
    data = ad.AnnData(x)
    data.obs["kind"] = labels
    net = DiT(n_in=8, tokens=4, width=16, n_layers=1, n_heads=2, n_categories=[2])
    model = Diffusion(net, VPCosine(), prediction="v", condition_keys=["kind"], p_uncond=0.2)
    gl.fit(model, gl.data.CountBatches(data, batch_size=64, seed=0, condition_keys=["kind"]), steps=150, lr=3e-3,
           progress=False)
    samples = {k: model.sample(200, nfe=20, codes=k, guidance_scale=1.0,
                               generator=torch.Generator().manual_seed(k)).mean().item() for k in (0, 1)}
    assert samples[1] - samples[0] > 1.5                    # the label moves the cells (true shift: 3)


def test_group_tokens_embed_each_group_by_its_own_linear_map_and_read_each_input_back_from_its_slot():
    torch.manual_seed(0)
    groups = np.array([2, 0, 1, 0, 2, 2, 1])                                  # sizes 2, 2, 3
    tok = GroupTokens(groups, width=4)
    x = torch.randn(3, 7)
    tokens = tok(x)
    for k in range(3):
        members = np.flatnonzero(groups == k)
        expected = x[:, members] @ tok.in_weight[k, :len(members)] + tok.in_bias[k]
        torch.testing.assert_close(tokens[:, k], expected)
    with torch.no_grad():
        tok.out_bias.copy_(torch.arange(tok.out_bias.numel(), dtype=torch.float32).reshape(tok.out_bias.shape))
    back = tok.readout(torch.zeros(2, 3, 4))[0]
    m = tok.out_bias.shape[1]
    rank = [int((np.flatnonzero(groups == groups[g]) < g).sum()) for g in range(7)]   # position within its group
    torch.testing.assert_close(back, torch.tensor([groups[g] * m + rank[g] for g in range(7)], dtype=torch.float32))


def test_chunks_are_contiguous_groups_and_bad_groups_are_refused():
    assert GroupTokens.chunks(6, 3, width=2).index.tolist() == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ValueError, match="empty groups"):
        GroupTokens(np.array([0, 2, 2]), width=2)
    with pytest.raises(ValueError, match="tokens of width"):
        DiT(n_in=6, tokens=GroupTokens.chunks(6, 3, width=8), width=16, n_heads=2)


def test_gene_programs_recover_blocks_of_co_expressed_genes():
    rng = np.random.default_rng(0)
    factors = rng.standard_normal((500, 3))
    truth = np.repeat([0, 1, 2], [5, 7, 4])
    expression = factors[:, truth] + 0.3 * rng.standard_normal((500, len(truth)))
    expression[:, np.flatnonzero(truth == 2)[:2]] *= -1                     # anti-correlated genes: same program
    from sklearn.metrics import adjusted_rand_score
    assert adjusted_rand_score(truth, gene_programs(expression, 3)) == 1.0


def _copy_with_permuted_genes(net, perm):
    other = DiT(net.n_in, SetTokens(net.n_in, 16), width=16, n_layers=2, n_heads=2)
    other.load_state_dict(net.state_dict())
    with torch.no_grad():
        other.tokens.gene_embedding.copy_(net.tokens.gene_embedding[perm])
    return other


def _randomize(net):
    with torch.no_grad():                                                     # leave adaLN-Zero's trivial start
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))


def test_a_dit_on_set_tokens_is_permutation_equivariant_over_genes_and_one_on_gene_programs_is_not():
    torch.manual_seed(0)
    x, t, perm = torch.randn(4, 10), torch.rand(4), torch.randperm(10)
    net = DiT(10, SetTokens(10, 16), width=16, n_layers=2, n_heads=2)
    _randomize(net)
    torch.testing.assert_close(_copy_with_permuted_genes(net, perm)(x[:, perm], t), net(x, t)[:, perm],
                               atol=1e-5, rtol=1e-5)
    programs = DiT(10, GroupTokens(np.arange(10) % 5, 16), width=16, n_layers=2, n_heads=2)
    _randomize(programs)
    assert not torch.allclose(programs(x[:, perm], t), programs(x, t)[:, perm], atol=1e-3)


def _reorder(x, steps, genes, gene_perm=None, step_perm=None):
    grid = x.reshape(len(x), steps, genes)
    if gene_perm is not None:
        grid = grid[:, :, gene_perm]
    if step_perm is not None:
        grid = grid[:, step_perm]
    return grid.reshape(len(x), steps * genes)


def test_gene_track_tokens_give_a_set_transformer_over_genes_and_step_tokens_one_over_time_stamped_days():
    torch.manual_seed(0)
    steps, genes, days = 4, 6, torch.tensor([0.0, 2.0, 4.0, 7.0])
    x, t = torch.randn(3, steps * genes), torch.rand(3)
    gene_perm, step_perm = torch.randperm(genes), torch.tensor([2, 0, 3, 1])
    over_genes = DiT(steps * genes, GeneTrackTokens(steps, genes, 16), width=16, n_layers=2, n_heads=2)
    over_days = DiT(steps * genes, StepTokens(steps, genes, 16, times=days), width=16, n_layers=2, n_heads=2)
    for net in (over_genes, over_days):
        _randomize(net)
    relabelled = copy.deepcopy(over_genes)
    restamped = copy.deepcopy(over_days)
    with torch.no_grad():
        relabelled.tokens.gene_embedding.copy_(over_genes.tokens.gene_embedding[gene_perm])
        restamped.tokens.position.copy_(over_days.tokens.position[step_perm])
    torch.testing.assert_close(relabelled(_reorder(x, steps, genes, gene_perm=gene_perm), t),
                               _reorder(over_genes(x, t), steps, genes, gene_perm=gene_perm), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(restamped(_reorder(x, steps, genes, step_perm=step_perm), t),
                               _reorder(over_days(x, t), steps, genes, step_perm=step_perm), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(over_days(_reorder(x, steps, genes, step_perm=step_perm), t),   # stamps kept in place
                              _reorder(over_days(x, t), steps, genes, step_perm=step_perm), atol=1e-3)
    assert not torch.allclose(over_genes(_reorder(x, steps, genes, step_perm=step_perm), t),
                              _reorder(over_genes(x, t), steps, genes, step_perm=step_perm), atol=1e-3)


def test_a_dit_with_an_ssm_mixer_starts_as_the_identity_and_has_no_attention_maps():
    torch.manual_seed(0)
    days = [0.0, 2.0, 4.0, 7.0]
    net = DiT(4 * 5, StepTokens(4, 5, 8), width=8, n_layers=2, n_heads=2,
              mixer=lambda width: BidirectionalSSM(width, days, state_size=4))
    x, t = torch.randn(3, 20), torch.rand(3)
    torch.testing.assert_close(net(x, t), torch.zeros(3, 20))
    block, h = net.blocks[0], torch.randn(3, 4, 8)
    torch.testing.assert_close(block(h, torch.randn(3, 8)), h)
    assert block.attn is None and isinstance(block.mixer, BidirectionalSSM)
    _randomize(net)
    assert net(x, t).abs().max() > 0
    with pytest.raises(ValueError, match="no attention maps"):
        net.attention_maps(x, t)
    with pytest.raises(ValueError, match="one time per step"):
        StepTokens(4, 5, 8, times=[0.0, 1.0])
