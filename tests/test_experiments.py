"""papermill runs into fresh run directories, the report across runs, and the CLI."""
import json

import nbformat
import pytest

from genailab_core.experiments import find_chapter, main, parse_value, report, run_chapter


def tiny_chapter(path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "auto"\nseed = 0\nscale = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import genailab_core as gl\n"
        "run = gl.setup(profile, seed=seed, name='99_tiny')\n"
        "cfg = run.pick(smoke=dict(scale=1), quick=dict(scale=2), scale=scale)\n"
        "run.finish({'value': cfg.scale * 10, 'seed_seen': seed})")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_parse_value():
    assert parse_value("16") == 16 and parse_value("0.5") == 0.5 and parse_value("None") is None
    assert parse_value("[1, 2]") == [1, 2] and parse_value("nb") == "nb"


def test_run_writes_executed_notebook_and_metrics_and_never_overwrites(tmp_path):
    nb = tiny_chapter(tmp_path / "99_tiny.ipynb")
    first = run_chapter(nb, profile="quick", parameters={"seed": 4}, runs_root=tmp_path / "runs", progress=False)
    second = run_chapter(nb, profile="smoke", runs_root=tmp_path / "runs", progress=False)
    assert first != second
    record = json.loads((first / "metrics.json").read_text())
    assert record["metrics"] == {"value": 20, "seed_seen": 4} and record["profile"] == "quick"
    assert (first / "99_tiny.ipynb").exists()
    table = report(tmp_path / "runs")
    assert sorted(table["value"].tolist()) == [10, 20]


def test_cli_rejects_unknown_profile_before_running(tmp_path):
    nb = tiny_chapter(tmp_path / "99_tiny.ipynb")
    with pytest.raises(ValueError, match="Valid profiles"):
        main(["run", str(nb), "--profile", "turbo", "--runs", str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()


def test_report_on_empty_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run a chapter first"):
        report(tmp_path)


def test_find_chapter_by_name_number_or_path(tmp_path):
    for stem in ("02_vae", "03_cvae", "17_perturbseq_data"):
        tiny_chapter(tmp_path / f"{stem}.ipynb")
    assert find_chapter("02_vae", tmp_path) == tmp_path / "02_vae.ipynb"
    assert find_chapter("3", tmp_path) == find_chapter("03", tmp_path) == tmp_path / "03_cvae.ipynb"
    assert find_chapter(tmp_path / "17_perturbseq_data.ipynb") == tmp_path / "17_perturbseq_data.ipynb"
    with pytest.raises(FileNotFoundError, match="the chapters are: 02_vae, 03_cvae, 17_perturbseq_data"):
        find_chapter("5", tmp_path)
    with pytest.raises(FileNotFoundError, match="No notebook at"):
        find_chapter(tmp_path / "missing.ipynb")
    assert find_chapter("02_vae").name == "02_vae.ipynb"          # the book's own chapters folder
