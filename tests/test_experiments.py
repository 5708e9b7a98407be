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


def _rows(text):
    """data list output -> {name: its row}."""
    return {line.split()[0]: line for line in text.splitlines() if line and not line.startswith(" ")}


def test_data_list_with_the_shared_data(data_root, monkeypatch, capsys):
    monkeypatch.setenv("GENAILAB_DATA", str(data_root))
    assert main(["data", "list"]) == 0
    rows = _rows(capsys.readouterr().out)
    from genailab_core.data.registry import REGISTRY
    assert set(REGISTRY) <= set(rows)
    for name in ("pbmc3k", "klein2015"):
        assert "present, verified" in rows[name] and str(data_root / REGISTRY[name].folder) in rows[name]


def test_data_list_says_missing_and_where_to_get_it(tmp_path, monkeypatch, capsys):
    from genailab_core.data.registry import REGISTRY
    monkeypatch.setenv("GENAILAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("GENAILAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GENAILAB_OFFLINE", "1")
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert all(" missing " in rows[name] for name in REGISTRY)
    assert f"put the files in {tmp_path / 'data' / 'klein2015'}/" in rows["klein2015"]
    for entry in REGISTRY["klein2015"].files:
        assert f"    {entry.relpath}: {entry.url}" in out
    assert REGISTRY["pbmc3k"].file("pbmc3k_raw.h5ad").url in out and "data fetch NAME|all" in out


def test_data_list_flags_a_modified_copy(data_root, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "data" / "klein2015"
    folder.mkdir(parents=True)
    (folder / "profile.txt").write_bytes((data_root / "klein2015" / "profile.txt").read_bytes())
    (folder / "labels.txt").write_text((data_root / "klein2015" / "labels.txt").read_text().replace("7", "4", 1))
    monkeypatch.setenv("GENAILAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("GENAILAB_CACHE", str(tmp_path / "cache"))
    main(["data", "list"])
    out = capsys.readouterr().out
    assert "present, hash mismatch" in _rows(out)["klein2015"]
    assert f"{folder / 'labels.txt'}: hash differs" in out and "profile.txt: hash" not in out


def test_data_fetch_downloads_into_the_cache(data_root, tmp_path, monkeypatch, capsys):
    """pooch stubbed with the shared copies: fetch puts every required file in the cache, hash-checked."""
    import shutil
    from genailab_core.data.registry import REGISTRY
    urls = {entry.url: data_root / "klein2015" / entry.relpath for entry in REGISTRY["klein2015"].files}

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        assert known_hash.startswith("sha256:")
        path.mkdir(parents=True, exist_ok=True)
        return str(shutil.copy(urls.pop(url), path / fname))

    monkeypatch.setenv("GENAILAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("GENAILAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GENAILAB_OFFLINE", "0")
    monkeypatch.setattr("pooch.retrieve", fake_retrieve)
    assert main(["data", "fetch", "klein2015"]) == 0
    assert not urls and (tmp_path / "cache" / "klein2015" / "labels.txt").is_file()
    assert str(tmp_path / "cache" / "klein2015" / "profile.txt") in capsys.readouterr().out
    main(["data", "list"])
    row = _rows(capsys.readouterr().out)["klein2015"]
    assert "present, verified" in row and row.endswith(str(tmp_path / "cache" / "klein2015"))


def test_data_fetch_unknown_name_or_offline_fails_with_a_message(tmp_path, monkeypatch, capsys):
    from genailab_core.data.registry import REGISTRY
    assert main(["data", "fetch", "nosuch"]) != 0
    err = capsys.readouterr().err
    assert "'nosuch'" in err and all(name in err for name in REGISTRY) and "'all'" in err
    monkeypatch.setenv("GENAILAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("GENAILAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GENAILAB_OFFLINE", "1")
    assert main(["data", "fetch", "all"]) == 1
    err = capsys.readouterr().err
    assert "GENAILAB_OFFLINE=1" in err and "Not fetched: " + ", ".join(REGISTRY) + "." in err
