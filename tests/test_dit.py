"""models/dit.py: adaLN-Zero blocks and the Diffusion Transformer (Peebles & Xie 2023)."""
import anndata as ad
import numpy as np
import pytest
import torch

import genailab_core as gl
from genailab_core.models import Diffusion, FlowMatching
from genailab_core.models.dit import AdaLNZeroBlock, DiT
from genailab_core.schedules import VPCosine


def test_an_adaln_zero_block_is_exactly_the_identity_at_initialisation():
    torch.manual_seed(0)
    block = AdaLNZeroBlock(width=32, n_heads=4, cond_dim=16)
    h, c = torch.randn(5, 7, 32), torch.randn(5, 16)
    assert torch.equal(block(h, c), h)


def test_a_dit_outputs_zero_at_initialisation_and_only_the_named_layers_start_at_zero():
    torch.manual_seed(0)
    net = DiT(n_in=24, n_tokens=6, width=32, n_layers=2, n_heads=4, n_categories=[3])
    out = net(torch.randn(8, 24), torch.rand(8), torch.tensor([[0], [1], [2], [-1]] * 2))
    assert torch.equal(out, torch.zeros(8, 24))
    zero = {n for n, p in net.named_parameters() if p.abs().max() == 0}
    assert zero == {f"blocks.{i}.modulation.1.{w}" for i in range(2) for w in ("weight", "bias")} | \
        {"final_modulation.1.weight", "final_modulation.1.bias", "out.weight", "out.bias"} | \
        {n for n, _ in net.named_parameters() if n.endswith("in_proj_bias") or n.endswith("out_proj.bias")}


def test_training_moves_the_gates_off_zero_so_the_blocks_stop_being_the_identity():
    torch.manual_seed(0)
    x = torch.randn(256, 12)
    model = FlowMatching(DiT(n_in=12, n_tokens=4, width=16, n_layers=1, n_heads=2))
    gl.fit(model, gl.data.CountBatches(ad.AnnData(x.numpy()), batch_size=64, seed=0), steps=20, lr=1e-2,
           progress=False)
    block = model.network.blocks[0]
    h, c = torch.randn(3, 4, 16), torch.randn(3, 16)
    assert not torch.allclose(block(h, c), h)
    assert model.network(x[:4], torch.full((4,), 0.5)).abs().max() > 0


@pytest.mark.parametrize("n_in, n_tokens", [(20, 3), (20, 0), (7, 2)])
def test_a_token_count_that_does_not_divide_the_input_is_refused(n_in, n_tokens):
    with pytest.raises(ValueError, match="does not divide"):
        DiT(n_in=n_in, n_tokens=n_tokens)


def test_a_dit_rejects_wrong_shapes_and_codes_without_conditions():
    net = DiT(n_in=8, n_tokens=4, width=16, n_layers=1, n_heads=2)
    with pytest.raises(ValueError, match=r"shape \(batch, 8\)"):
        net(torch.randn(3, 9), torch.rand(3))
    with pytest.raises(ValueError, match="without conditions"):
        net(torch.randn(3, 8), torch.rand(3), torch.zeros(3, 1, dtype=torch.long))


def test_attention_maps_are_row_stochastic_per_layer_and_leave_no_state():
    torch.manual_seed(0)
    net = DiT(n_in=12, n_tokens=6, width=16, n_layers=3, n_heads=4)
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
    net = DiT(n_in=8, n_tokens=4, width=16, n_layers=1, n_heads=2, n_categories=[2])
    model = Diffusion(net, VPCosine(), prediction="v", condition_keys=["kind"], p_uncond=0.2)
    gl.fit(model, gl.data.CountBatches(data, batch_size=64, seed=0, condition_keys=["kind"]), steps=150, lr=3e-3,
           progress=False)
    samples = {k: model.sample(200, nfe=20, codes=k, guidance_scale=1.0,
                               generator=torch.Generator().manual_seed(k)).mean().item() for k in (0, 1)}
    assert samples[1] - samples[0] > 1.5                    # the label moves the cells (true shift: 3)
