"""The chapters' Colab badge and install cell, derived from one setting: ``repository.url`` in _config.yml.

``python -m genailab_core sync-headers`` rewrites them in every chapter after that setting changes;
a test checks that every chapter agrees with it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
INSTALL_MARKER = "# Colab only: install genailab_core"
ROOT = Path(__file__).resolve().parent.parent


def repository(config: str | Path = ROOT / "_config.yml") -> tuple[str, str]:
    """(url, branch) of the book's repository from ``_config.yml``."""
    settings = yaml.safe_load(Path(config).read_text())["repository"]
    return settings["url"].rstrip("/"), settings.get("branch", "main")


def colab_badge(notebook: str, config: str | Path = ROOT / "_config.yml") -> str:
    """Markdown of the "Open in Colab" badge for ``chapters/NN_name.ipynb``."""
    url, branch = repository(config)
    slug = url.removeprefix("https://github.com/")
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{slug}/blob/{branch}/{notebook})")


def install_cell(config: str | Path = ROOT / "_config.yml") -> str:
    """Source of the chapter's second cell: installs the package only when running in Colab."""
    url, branch = repository(config)
    return (f"{INSTALL_MARKER} (does nothing elsewhere)\n"
            "import subprocess, sys\n"
            "if \"google.colab\" in sys.modules:\n"
            f"    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", "
            f"\"genailab-core @ git+{url}@{branch}\"], check=True)")


def header_problems(path: Path, root: Path = ROOT) -> list[str]:
    """What in a chapter's badge or install cell disagrees with _config.yml (empty when in sync)."""
    cells = json.loads(path.read_text())["cells"]
    rel = path.resolve().relative_to(root).as_posix()
    problems = []
    if colab_badge(rel, root / "_config.yml") not in "".join(cells[0]["source"]):
        problems.append(f"{rel}: the title cell lacks the Colab badge {colab_badge(rel, root / '_config.yml')}")
    if "".join(cells[1]["source"]).strip() != install_cell(root / "_config.yml"):
        problems.append(f"{rel}: the second cell is not the Colab install cell derived from _config.yml")
    return problems


def sync_headers(root: Path = ROOT) -> list[Path]:
    """Rewrite the badge (title cell) and install cell (second cell) of every chapter; return changed files."""
    changed = []
    for path in sorted((root / "chapters").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        rel = path.relative_to(root).as_posix()
        title = "".join(nb["cells"][0]["source"])
        badge = colab_badge(rel, root / "_config.yml")
        title = BADGE_RE.sub(badge, title) if BADGE_RE.search(title) else title.rstrip() + "\n\n" + badge
        nb["cells"][0]["source"] = title
        if INSTALL_MARKER not in "".join(nb["cells"][1]["source"]):
            nb["cells"].insert(1, {"cell_type": "code", "metadata": {}, "execution_count": None,
                                   "outputs": [], "source": ""})
        nb["cells"][1]["source"] = install_cell(root / "_config.yml")
        text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        if text != path.read_text():
            path.write_text(text)
            changed.append(path)
    return changed


def show_source(obj) -> None:
    """Display the source of a package function or class in a notebook, so a chapter shows the
    exact lines it runs (the package holds them; the chapter reads them)."""
    import inspect
    import textwrap

    from IPython.display import Markdown, display

    code = textwrap.dedent(inspect.getsource(obj))
    module = inspect.getmodule(obj).__name__
    display(Markdown(f"`{module}.{obj.__qualname__}`\n\n```python\n{code}```"))
