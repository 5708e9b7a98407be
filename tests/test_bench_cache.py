"""The cached `make bench` record that chapter 02 shows is self-consistent."""
import pytest

from genailab_core import bench


def test_cached_vae_record_summary_matches_its_results():
    record = bench.cached_record()
    table = bench.comparison_table(record)
    ours, peer = table.iloc[0], table.iloc[1]
    summary = record["summary"]
    assert ours["training s"] / peer["training s"] == pytest.approx(summary["time_ratio"], rel=1e-9)
    assert ours["s per epoch"] / peer["s per epoch"] == pytest.approx(summary["seconds_per_epoch_ratio"], rel=1e-9)
    assert ours["held-out marginal LL"] - peer["held-out marginal LL"] == pytest.approx(
        summary["marginal_ll_difference_nats"], abs=1e-6)
    assert ours["training s"] / ours["epochs"] == pytest.approx(ours["s per epoch"], rel=1e-9)
    assert record["versions"]["scvi-tools"] and record["settings"]["n_is_samples"] >= 1000


def test_missing_cached_record_says_how_to_make_one():
    with pytest.raises(FileNotFoundError, match="make bench"):
        bench.cached_record("no_such_bench")
