"""models/lora.py: LoRA (Hu et al. 2022) on linear layers, checked against its definition and against peft."""
import copy

import pytest
import torch
from torch import nn

from genailab_core.models.lora import (LoRALinear, apply_lora, load_lora, load_lora_state_dict, lora_layers,
                                       lora_state_dict, merge_lora, save_lora, unmerge_lora)


def network(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 5))


def randomize_lora(module, seed=1, scale=0.5):
    """Non-zero B (zero B would make every comparison trivial)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(module).values():
            layer.lora_A.copy_(torch.randn(layer.lora_A.shape, generator=g) * scale)
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * scale)
    return module


def test_at_initialisation_the_adapted_network_is_exactly_the_base_network():
    base = network()
    x = torch.randn(7, 12)
    adapted = apply_lora(copy.deepcopy(base), rank=4, alpha=8)
    assert torch.equal(adapted(x), base(x))
    assert all(layer.lora_B.abs().max() == 0 and layer.lora_A.abs().max() > 0 for layer in lora_layers(adapted).values())


def test_the_forward_pass_is_w_x_plus_b_plus_alpha_over_r_times_b_a_x():
    torch.manual_seed(0)
    linear = nn.Linear(6, 3)
    layer = randomize_lora(nn.Sequential(LoRALinear(linear, rank=2, alpha=6)))[0]
    x = torch.randn(4, 6)
    by_hand = x @ linear.weight.T + linear.bias + 3.0 * (x @ layer.lora_A.T @ layer.lora_B.T)    # alpha / r = 3
    torch.testing.assert_close(layer(x), by_hand, rtol=0, atol=1e-6)
    assert not linear.weight.requires_grad and not linear.bias.requires_grad      # the base is frozen by the wrapper


def close_to_1e6(a, b):
    """|a - b| <= 1e-6 of the outputs' scale (float32 rounds W + BA at about 1e-7 of |W|)."""
    return (a - b).abs().max() <= 1e-6 * b.abs().max()


def test_merged_outputs_equal_unmerged_and_unmerging_restores_the_base_weight():
    model = randomize_lora(apply_lora(network(), rank=3, alpha=6))
    x = torch.randn(9, 12)
    weights = {n: l.base.weight.clone() for n, l in lora_layers(model).items()}
    unmerged = model(x)
    merge_lora(model)
    assert all(l.merged for l in lora_layers(model).values())
    assert close_to_1e6(model(x), unmerged)
    for name, layer in lora_layers(model).items():                       # W + BA really is the weight now
        torch.testing.assert_close(layer.base.weight, weights[name] + layer.delta_weight(), rtol=0, atol=1e-6)
    unmerge_lora(model)
    assert close_to_1e6(model(x), unmerged)
    for name, layer in lora_layers(model).items():
        torch.testing.assert_close(layer.base.weight, weights[name], rtol=0, atol=1e-6)
    with pytest.raises(RuntimeError, match="not merged"):
        unmerge_lora(model)


def test_only_the_adapter_parameters_receive_gradients():
    model = apply_lora(network(), rank=2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"0.lora_A", "0.lora_B", "3.lora_A", "3.lora_B"}
    model(torch.randn(5, 12)).pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (name in trainable), name
    # B = 0 at the start, so A's gradient is 0 but B's is not (the first step moves B only)
    assert model[0].lora_B.grad.abs().max() > 0


def test_targets_choose_layers_by_name_and_leave_the_rest_plain():
    model = apply_lora(network(), rank=2, targets=["3"])
    assert list(lora_layers(model)) == ["3"] and isinstance(model[0], nn.Linear)
    assert not model[0].weight.requires_grad                            # frozen all the same


def test_a_saved_and_loaded_adapter_reproduces_the_outputs_exactly(tmp_path):
    trained = randomize_lora(apply_lora(network(seed=0), rank=4, alpha=4))
    x = torch.randn(6, 12)
    path = save_lora(trained, tmp_path / "adapter.pt")
    fresh = apply_lora(network(seed=0), rank=4, alpha=4)                  # same base weights, new adapter
    assert not torch.equal(fresh(x), trained(x))
    load_lora(fresh, path)
    assert torch.equal(fresh(x), trained(x))
    assert set(torch.load(path, weights_only=True)["lora"]) == {"0.lora_A", "0.lora_B", "3.lora_A", "3.lora_B"}
    # the state dict alone, also into a merged model
    merged = merge_lora(apply_lora(network(seed=0), rank=4, alpha=4))
    load_lora_state_dict(merged, lora_state_dict(trained))
    torch.testing.assert_close(merged(x), trained(x), rtol=0, atol=1e-6)


def test_loading_an_adapter_of_another_rank_or_alpha_is_a_clear_error(tmp_path):
    path = save_lora(apply_lora(network(), rank=4, alpha=4), tmp_path / "a.pt")
    with pytest.raises(ValueError, match="same rank, alpha"):
        load_lora(apply_lora(network(), rank=4, alpha=8), path)
    with pytest.raises(ValueError, match="another rank"):
        load_lora_state_dict(apply_lora(network(), rank=2), lora_state_dict(apply_lora(network(), rank=4)))
    with pytest.raises(ValueError, match="missing"):
        load_lora_state_dict(apply_lora(network(), rank=2, targets=["0"]), lora_state_dict(apply_lora(network(), 2)))


def test_lora_on_a_module_with_no_linear_layer_is_a_clear_error():
    with pytest.raises(ValueError, match="no nn.Linear"):
        apply_lora(nn.Sequential(nn.Conv1d(2, 2, 3), nn.ReLU()), rank=2)
    with pytest.raises(ValueError, match="No linear layer matches"):
        apply_lora(network(), rank=2, targets=["decoder"])
    with pytest.raises(ValueError, match="bare nn.Linear"):
        apply_lora(nn.Linear(3, 3), rank=2)
    with pytest.raises(ValueError, match="positive integer"):
        apply_lora(network(), rank=0)
    with pytest.raises(ValueError, match="already holds LoRA"):
        apply_lora(apply_lora(network(), rank=2), rank=2)


def test_it_matches_peft_lora_on_the_same_linear_layer_weights_and_inputs():
    peft = pytest.importorskip("peft")

    class OneLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(10, 7)

        def forward(self, x):
            return self.proj(x)

    torch.manual_seed(0)
    base = OneLinear()
    ours = apply_lora(copy.deepcopy(base), rank=3, alpha=12, targets=["proj"])
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=3, lora_alpha=12, target_modules=["proj"],
                                                                       lora_dropout=0.0))
    layer = theirs.base_model.model.proj
    assert layer.scaling["default"] == ours.proj.scaling == 4.0
    randomize_lora(ours, seed=3)
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(ours.proj.lora_A)
        layer.lora_B["default"].weight.copy_(ours.proj.lora_B)
    x = torch.randn(8, 10)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)
    assert ours(x).sub(base(x)).abs().max() > 0.1                       # the update is not trivially zero
    # and both train the same numbers of parameters
    n_ours = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    assert n_ours == sum(p.numel() for p in theirs.parameters() if p.requires_grad) == 3 * (10 + 7)
    # merged, too
    merge_lora(ours)
    torch.testing.assert_close(ours(x), theirs.merge_and_unload()(x), rtol=0, atol=1e-6)
