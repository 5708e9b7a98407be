"""Chapters as parameterized experiments (papermill), a results table across runs, and the CLI.

    python -m genailab_core run chapters/02_vae.ipynb --profile full -p n_latent 16
    python -m genailab_core report runs/
    python -m genailab_core bench vae
    python -m genailab_core data list
    python -m genailab_core data fetch pbmc3k        # or: data fetch all

Each run gets a fresh ``runs/<chapter>/<timestamp>/`` with the executed notebook and the
``metrics.json`` its last cell writes; an existing run directory is never reused.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .config import RUN_DIR_ENV, new_run_dir, resolve_profile


def parse_value(text: str) -> Any:
    """'16' -> 16, '0.5' -> 0.5, 'None' -> None, 'True' -> True, '[1, 2]' -> [1, 2], else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def find_chapter(name: str | Path, chapters_dir: str | Path | None = None) -> Path:
    """A notebook path, or a chapter named by its file stem or number: '02_vae', '02', '2' -> chapters/02_vae.ipynb."""
    path = Path(name)
    if path.exists():
        return path
    if path.suffix == ".ipynb":
        raise FileNotFoundError(f"No notebook at {path}; chapters live in chapters/NN_name.ipynb.")
    from .book import ROOT
    folder = Path(chapters_dir) if chapters_dir is not None else ROOT / "chapters"
    available = sorted(folder.glob("*.ipynb"))
    key = str(name).zfill(2) if str(name).isdigit() else str(name)
    matches = [p for p in available if p.stem == key] or [p for p in available if p.stem.startswith(f"{key}_")]
    if len(matches) != 1:
        names = ", ".join(p.stem for p in available) or "none"
        raise FileNotFoundError(f"No single chapter matches {str(name)!r} in {folder}; the chapters are: {names}. "
                                "Give a chapter's name, its number, or a notebook path.")
    return matches[0]


def run_chapter(notebook: str | Path, profile: str = "auto", parameters: dict[str, Any] | None = None,
                runs_root: str | Path = "runs", progress: bool = True) -> Path:
    """Execute ``notebook`` (a path, or a chapter's name or number) with papermill; return the new run directory.

    Widgets are drawn as static figures (``GENAILAB_STATIC=1`` unless set), since a saved
    notebook keeps images but not a live kernel behind its sliders.
    """
    import papermill

    notebook = find_chapter(notebook)
    resolve_profile(profile)                                        # fail fast on a bad profile name
    run_dir = new_run_dir(notebook.stem, Path(runs_root).resolve())
    params = {"profile": profile, **(parameters or {})}
    previous = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)                          # the kernel's setup() writes here
    os.environ.setdefault("GENAILAB_STATIC", "1")
    try:
        papermill.execute_notebook(str(notebook), str(run_dir / notebook.name), parameters=params,
                                   cwd=str(notebook.parent.resolve()), progress_bar=progress)
    finally:
        if previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous
    (run_dir / "parameters.json").write_text(json.dumps(params, indent=2, default=str))
    print(f"run written to {run_dir}")
    return run_dir


def report(runs_root: str | Path = "runs") -> pd.DataFrame:
    """One row per run found under ``runs_root``: chapter, profile, seed, run, and every metric."""
    rows = []
    for path in sorted(Path(runs_root).rglob("metrics.json")):
        record = json.loads(path.read_text())
        row = {"chapter": record.get("chapter"), "run": path.parent.name, "profile": record.get("profile"),
               "seed": record.get("seed")}
        row.update({k: v for k, v in record.get("metrics", {}).items() if not isinstance(v, (list, dict))})
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"No metrics.json under {runs_root}; run a chapter first "
                                "(python -m genailab_core run chapters/02_vae.ipynb).")
    return pd.DataFrame(rows).sort_values(["chapter", "run"]).reset_index(drop=True)


def data_list() -> str:
    """One row per registry data set: name, status, and where the copy is or, when missing, where to put it.

    Below a missing data set, one line per missing file with the URL to get it from.
    """
    from .data.registry import MISSING, REGISTRY, VERIFIED, dataset_status

    lines, complete = [], True
    for name in REGISTRY:
        status = dataset_status(name)
        complete &= status.state == VERIFIED
        where = f"put the files in {status.folder}/" if status.state == MISSING else str(status.folder)
        lines.append(f"{name:<18} {status.state:<23} {where}")
        lines += [f"    {path}: hash differs from the registry; delete it and place a verified copy"
                  for path in status.mismatched]
        for entry in status.missing:
            how = ("  (a conversion of that file: data/README.md says how)" if not entry.downloadable
                   else "  (converted on fetch)" if entry.converted else "")
            lines.append(f"    {entry.relpath}: {entry.url}{how}")
    if not complete:
        lines.append("Fetch with: python -m genailab_core data fetch NAME|all (downloads into the cache; "
                     "GENAILAB_OFFLINE=1 forbids it).")
    return "\n".join(lines)


def data_fetch(name: str) -> int:
    """Resolve every required file of data set ``name`` (or of every data set for ``"all"``); 0 when all are there."""
    from .data.registry import REGISTRY, ChecksumError, DataNotFoundError, UnknownDatasetError, fetch_dataset, get_spec

    try:
        names = list(REGISTRY) if name == "all" else [get_spec(name).name]
    except UnknownDatasetError as err:
        print(f"{err} Or 'all' for every data set.", file=sys.stderr)
        return 2
    failed = []
    for each in names:
        try:
            paths = fetch_dataset(each)
        except (DataNotFoundError, ChecksumError) as err:
            print(f"{each}: {err}", file=sys.stderr)
            failed.append(each)
            continue
        print(f"{each}: " + ", ".join(str(p) for p in paths))
    if failed:
        print(f"Not fetched: {', '.join(failed)}.", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genailab_core", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="execute a chapter with papermill into runs/<chapter>/<timestamp>/")
    run_p.add_argument("notebook", help="a chapter: its name (02_vae), number (2) or notebook path")
    run_p.add_argument("--profile", default="auto", help="smoke, quick, full or auto (default)")
    run_p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    run_p.add_argument("--runs", default="runs", help="root folder of run directories")
    rep_p = sub.add_parser("report", help="table of metrics across runs")
    rep_p.add_argument("runs", nargs="?", default="runs")
    rep_p.add_argument("--csv", help="also write the table to this CSV file")
    bench_p = sub.add_parser("bench", help="benchmark a model against its peer package")
    bench_p.add_argument("what", choices=["vae", "flow"])
    bench_p.add_argument("--epochs", type=int, default=None, help="NB-VAE epochs (default: the tuned setting)")
    bench_p.add_argument("--steps", type=int, default=None, help="OT-CFM training steps (default: the bench's setting)")
    bench_p.add_argument("--seed", type=int, default=0)
    bench_p.add_argument("--out", default="bench_results", help="folder for the results JSON")
    sub.add_parser("sync-headers", help="rewrite every chapter's Colab badge and install cell from _config.yml")
    data_p = sub.add_parser("data", help="list the registry's data sets and their local status, or fetch them")
    data_sub = data_p.add_subparsers(dest="action", required=True)
    data_sub.add_parser("list", help="one row per data set: present and verified, hash mismatch, or missing (+ URL)")
    fetch_p = data_sub.add_parser("fetch", help="find or download every required file of a data set")
    fetch_p.add_argument("name", help="a registry name (data list shows them), or 'all'")
    args = parser.parse_args(argv)

    if args.command == "run":
        params = {name: parse_value(value) for name, value in args.parameter}
        run_chapter(args.notebook, profile=args.profile, parameters=params, runs_root=args.runs)
    elif args.command == "report":
        table = report(args.runs)
        with pd.option_context("display.max_columns", None, "display.width", 200):
            print(table.to_string(index=False))
        if args.csv:
            table.to_csv(args.csv, index=False)
    elif args.command == "bench" and args.what == "flow":
        from .bench_flow import bench_flow
        bench_flow(seed=args.seed, steps=args.steps, out_dir=args.out)
    elif args.command == "bench":
        from .bench import bench_vae
        bench_vae(epochs=args.epochs, seed=args.seed, out_dir=args.out)
    elif args.command == "sync-headers":
        from .book import sync_headers
        for path in sync_headers():
            print(f"updated {path}")
    elif args.command == "data":
        if args.action == "fetch":
            return data_fetch(args.name)
        print(data_list())
    return 0


if __name__ == "__main__":
    sys.exit(main())
