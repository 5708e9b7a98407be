"""models/adaptation.py: resource presets, bottleneck adapters (Houlsby et al. 2019), freezing strategies, the
encoder classifier, few-label subsets and the memory account of a training step."""
import anndata as ad
import numpy as np
import pytest
import torch
from torch import nn

import genailab_core as gl
from genailab_core.models import VAE
from genailab_core.models import adaptation as adapt
from genailab_core.models.adaptation import (BottleneckAdapter, EncoderClassifier, Hardware, VAEFeatures, add_adapters,
                                             choose_preset, count_parameters, few_label_subset, freeze_all_but_head,
                                             freeze_all_but_last_blocks, freeze_all_but_norms, preset, presets_table,
                                             training_memory)
from genailab_core.models.lora import apply_lora


def encoder(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))


def classifier(seed=0, n_classes=3):
    return EncoderClassifier(encoder(seed), n_features=4, n_classes=n_classes)


# -- presets --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hardware, expected", [
    (Hardware(cpu_cores=2, memory_gb=8), "small"),
    (Hardware(cpu_cores=16, memory_gb=8), "small"),                     # many cores, too little memory
    (Hardware(cpu_cores=16, memory_gb=64), "medium"),
    (Hardware(cpu_cores=8, memory_gb=16, mps=True), "medium"),
    (Hardware(cpu_cores=4, memory_gb=8, mps=True), "medium"),
    (Hardware(cpu_cores=8, memory_gb=32, cuda_name="T4", cuda_memory_gb=15.8), "medium"),
    (Hardware(cpu_cores=16, memory_gb=128, cuda_name="H100", cuda_memory_gb=80.0), "large"),
])
def test_the_preset_follows_the_hardware(hardware, expected):
    assert choose_preset(hardware).name == expected
    table = presets_table(hardware)
    assert list(table.index[table.chosen == "<-"]) == [expected]


def test_detected_hardware_drives_the_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(adapt.os, "cpu_count", lambda: 2)
    hw = adapt.detect_hardware()
    assert hw.cpu_cores == 2 and hw.cuda_name is None and not hw.mps and hw.memory_gb > 0
    assert choose_preset().name == "small"
    monkeypatch.setattr(adapt.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(adapt, "_memory_gb", lambda: 256.0)
    assert choose_preset().name == "medium"


def test_a_preset_name_that_does_not_exist_is_a_clear_error():
    assert preset("small").n_genes < preset("medium").n_genes < preset("large").n_genes
    with pytest.raises(ValueError, match=r"Unknown resource preset 'huge'.*'small', 'medium', 'large'"):
        preset("huge")


# -- bottleneck adapters --------------------------------------------------------------------------------------------
def test_a_bottleneck_adapter_is_the_identity_at_initialisation_and_has_the_houlsby_parameter_count():
    a = BottleneckAdapter(16, 4)
    h = torch.randn(5, 16)
    assert torch.equal(a(h), h)
    assert count_parameters(a)[1] == 2 * 16 * 4 + 4 + 16
    with torch.no_grad():
        a.up.weight.fill_(0.1)
    expected = h + torch.relu(h @ a.down.weight.T + a.down.bias) @ a.up.weight.T
    torch.testing.assert_close(a(h), expected)


def test_adapters_leave_the_outputs_unchanged_at_the_start_and_only_they_train():
    base = encoder()
    x = torch.randn(6, 20)
    adapted = add_adapters(encoder(), bottleneck=2, targets=["0", "3"])
    assert torch.equal(adapted(x), base(x))
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable == {f"{i}.adapter.{l}.{w}" for i in (0, 3) for l in ("down", "up") for w in ("weight", "bias")}
    assert count_parameters(adapted)[0] == (2 * 16 * 2 + 2 + 16) + (2 * 8 * 2 + 2 + 8)
    adapted(x).sum().backward()
    assert all((p.grad is not None) == p.requires_grad for p in adapted.parameters())
    with pytest.raises(ValueError, match="No linear layer matches"):
        add_adapters(encoder(), bottleneck=2, targets=["head"])
    with pytest.raises(ValueError, match="no nn.Linear"):
        add_adapters(nn.Sequential(nn.ReLU()), bottleneck=2)


# -- freezing -------------------------------------------------------------------------------------------------------
def test_freezing_strategies_train_exactly_the_named_parameters():
    head = 4 * 3 + 3
    model = classifier()
    assert freeze_all_but_head(model) == head
    model = classifier()
    assert freeze_all_but_last_blocks(model, 1, blocks=["encoder.0", "encoder.3", "encoder.5"]) == (8 * 4 + 4) + head
    assert freeze_all_but_last_blocks(model, 2, blocks=["encoder.0", "encoder.3", "encoder.5"]) == \
        (16 * 8 + 8) + (8 * 4 + 4) + head
    assert freeze_all_but_norms(classifier()) == 2 * 16 + head
    assert count_parameters(model)[1] == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="no submodule 'classifier'"):
        freeze_all_but_head(classifier(), head="classifier")
    with pytest.raises(ValueError, match="k must be between"):
        freeze_all_but_last_blocks(classifier(), 4, blocks=["encoder.0"])


def test_a_frozen_encoder_is_bitwise_unchanged_by_fit_and_the_head_learns():
    torch.manual_seed(0)
    x = torch.randn(300, 20).abs() * 3
    y = (x[:, 0] > x[:, 1]).long() + (x[:, 2] > 3).long()                 # 3 classes from the inputs
    data = ad.AnnData(np.round(x.numpy()), obs={"label": y.numpy().astype(str)})
    batches = gl.data.CountBatches(data, batch_size=64, condition_keys=["label"], seed=0)
    model = classifier()
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = model.head.weight.clone()
    freeze_all_but_head(model)
    gl.fit(model, batches, steps=30, lr=1e-2, weight_decay=0.1, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
    assert not torch.equal(head_before, model.head.weight)


def test_the_classifier_loss_is_the_cross_entropy_and_fit_learns_a_separable_task():
    torch.manual_seed(0)
    x = torch.randn(400, 20).abs() * 3
    y = (x[:, 0] > x[:, 1]).long()
    model = EncoderClassifier(encoder(), n_features=4, n_classes=2)
    out = model.loss({"x": x, "label": y})
    torch.testing.assert_close(out.loss, nn.functional.cross_entropy(model(x), y))
    data = ad.AnnData(x.numpy(), obs={"label": y.numpy().astype(str)})
    gl.fit(model, gl.data.CountBatches(data, batch_size=64, condition_keys=["label"], seed=0), steps=300, lr=1e-2,
           progress=False)
    assert (model.predict(x) == y.numpy()).mean() > 0.9
    with pytest.raises(KeyError, match="no labels"):
        model.loss({"x": x})


def test_vae_features_are_the_posterior_mean_and_adapting_them_leaves_the_vae_unchanged():
    torch.manual_seed(0)
    vae = VAE(n_genes=30, n_latent=5, n_hidden=16, norm="layer").eval()
    x = torch.poisson(torch.rand(8, 30) * 5)
    features = VAEFeatures(vae).eval()
    torch.testing.assert_close(features(x), vae.encode(x).loc)
    apply_lora(features, rank=2)
    with torch.no_grad():
        features.loc.lora_B.fill_(1.0)
    assert not torch.allclose(features(x), vae.encode(x).loc)
    assert all(p.requires_grad for p in vae.parameters())                  # the VAE itself is untouched
    with pytest.raises(ValueError, match="unconditional count VAE"):
        VAEFeatures(VAE(n_genes=30, likelihood="gaussian"))


# -- few labels -----------------------------------------------------------------------------------------------------
def test_few_label_subsets_are_stratified_with_a_floor_per_class_and_reproducible():
    labels = np.array(["a"] * 500 + ["b"] * 90 + ["c"] * 3)
    idx = few_label_subset(labels, 0.1, seed=0, min_per_class=5)
    counts = {c: int((labels[idx] == c).sum()) for c in "abc"}
    assert counts == {"a": 50, "b": 9, "c": 3}
    assert len(np.unique(idx)) == len(idx)
    assert np.array_equal(idx, few_label_subset(labels, 0.1, seed=0, min_per_class=5))
    assert not np.array_equal(idx, few_label_subset(labels, 0.1, seed=1, min_per_class=5))
    assert len(few_label_subset(labels, 1.0, seed=0)) == len(labels)
    with pytest.raises(ValueError, match="label fraction"):
        few_label_subset(labels, 0.0, seed=0)


# -- memory ---------------------------------------------------------------------------------------------------------
def test_the_memory_account_counts_adam_states_for_trainable_parameters_only_and_activations_per_cell():
    full = classifier()
    lora = classifier()
    apply_lora(lora.encoder, rank=2)
    x, y = torch.randn(32, 20), torch.randint(0, 3, (32,))
    m_full = training_memory(full, {"x": x, "label": y})
    m_lora = training_memory(lora, {"x": x, "label": y})
    n_full, n_lora = count_parameters(full)[0], count_parameters(lora)[0]
    assert m_full["gradients"] == 4 * n_full and m_full["optimizer"] == 8 * n_full
    assert m_lora["gradients"] == 4 * n_lora < m_full["gradients"] and m_lora["optimizer"] == 8 * n_lora
    assert m_full["parameters"] == 4 * count_parameters(full)[1]
    act = [training_memory(full, {"x": x.repeat(k, 1), "label": y.repeat(k)})["activations"] for k in (1, 2, 3)]
    assert act[0] == m_full["activations"]
    assert act[2] - act[1] == act[1] - act[0] > 32 * 20 * 4                # saved tensors grow linearly with the batch
    assert m_full["total"] == sum(v for k, v in m_full.items() if k != "total")
