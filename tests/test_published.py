"""Published numbers: one CSV with a source for every number, shipped with the package."""
import tomllib
from pathlib import Path

import pytest

import genailab_core as gl
from genailab_core.published import COLUMNS


def test_every_number_has_a_source_and_what_it_was_measured_on():
    table = gl.published()
    assert list(table.columns) == COLUMNS and len(table) > 0
    assert table["source"].str.len().gt(10).all() and table["measured_on"].str.len().gt(10).all()
    assert table["value"].notna().all()


def test_filters():
    ch18 = gl.published(chapter=18, metric="pearson_delta_top1000ctrl")
    assert set(ch18["method"]) == {"additive", "GEARS", "scGPT"}
    assert (ch18["dataset"] == "norman2019").all()
    scgen = gl.published(chapter=3, method="scGen").set_index("metric")["value"]
    assert scgen["r2_mean_expression_all_genes"] == pytest.approx(0.949)
    assert scgen["r2_mean_expression_top100_degs"] == pytest.approx(0.936)
    assert gl.published(chapter=99).empty and not gl.published(chapter=18).empty
    with pytest.raises(KeyError, match="Unknown column"):
        gl.published(paper="x")


def test_the_csv_ships_with_the_package():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["genailab_core"]
    assert any(Path("resources/published_numbers.csv").match(p) for p in patterns)
