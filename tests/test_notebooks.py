"""Every chapter: stored without outputs, a `parameters` cell, in _toc.yml, the chapter contract's
header derived from _config.yml, and a final `run.finish(...)`."""
import json
from pathlib import Path

import pytest
import yaml

from genailab_core.book import ROOT, header_problems

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def toc_files():
    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                yield node["file"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return {str(Path(f).with_suffix("")) for f in walk(toc)} | {toc["root"]}


def test_there_are_chapters():
    assert len(CHAPTERS) >= 2


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_contract(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code), "clear the outputs before committing"
    assert nb["nbformat_minor"] < 5 or all("id" in c for c in nb["cells"]), "a cell has no id (nbformat 4.5)"
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code), "no cell tagged 'parameters'"
    assert f"chapters/{path.stem}" in toc_files(), "chapter missing from _toc.yml"
    assert header_problems(path) == [], "run: python -m genailab_core sync-headers"
    assert "run.finish(" in "".join(code[-1]["source"]), "the last cell must call run.finish(metrics)"
    assert "gl.setup(" in "".join("".join(c["source"]) for c in code) or "genailab_core.setup(" in \
        "".join("".join(c["source"]) for c in code)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    """papermill parses each line of the parameters cell; a line it cannot parse drops that parameter
    from `papermill --help-notebook` and makes `-p` warn "Passed unknown parameter"."""
    from papermill.translators import PythonTranslator
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    source = "".join(cell["source"])
    assigned = [line.split("=")[0].strip() for line in source.splitlines()
                if line and not line[0].isspace() and not line.startswith("#") and "=" in line.split("#")[0]]
    inferred = [p.name for p in PythonTranslator.inspect({"source": source})]
    assert inferred == assigned and {"profile", "seed"} <= set(inferred)
