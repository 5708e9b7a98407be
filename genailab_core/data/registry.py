"""Where every data set comes from, and how a file is found on disk.

Each data set is a :class:`DatasetSpec`: its canonical public page, citation and licence,
and the files its loader reads (:class:`DataFile`, each with the sha256 of the verified copy
and the canonical URL it comes from); the entries themselves are data, in
``resources/datasets.toml``, loaded by :mod:`.catalog` (:data:`REGISTRY`, importable from here
too), the download-time conversions in
:mod:`.converters` and :mod:`.converters_r` (the R objects, read with ``rdata``, no R).
:func:`resolve_file` finds a file in this order (``DESIGN.md`` section 5):

1. an explicit ``path=`` (a file, or a folder that holds the data set's files);
2. ``$GENAILAB_DATA/<folder>/<file>``;
3. the cache ``$GENAILAB_CACHE/<folder>/<file>`` (default ``~/.cache/genailab``);
4. a download from the canonical URL through pooch, with a hash check, converting the
   upstream file where the placed file is a conversion of it. ``GENAILAB_OFFLINE=1``
   forbids this step.

With no copy it raises :class:`DataNotFoundError`, whose message names the URL, the folder
to put the file in, and the ``GENAILAB_DATA`` variable. Checksums of local copies are
checked by :func:`verify_dataset` (hashing 30 MB on every load would be slow);
:func:`dataset_status` and :func:`fetch_dataset` back ``python -m genailab_core data list|fetch``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importable from here (see __getattr__ at the end); defined in .catalog
    from .catalog import REGISTRY  # noqa: F401


DATA_ENV = "GENAILAB_DATA"
CACHE_ENV = "GENAILAB_CACHE"
OFFLINE_ENV = "GENAILAB_OFFLINE"
DEFAULT_CACHE = Path("~/.cache/genailab")


class UnknownDatasetError(KeyError):
    """A data set name that is not in :data:`REGISTRY`."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as a sentence.
        return str(self.args[0]) if self.args else ""


class DataNotFoundError(FileNotFoundError):
    """No local copy of a data file, and no download was possible or allowed."""


class ChecksumError(ValueError):
    """A file's sha256 differs from the one recorded in the registry."""


def github_raw(repo: str, commit: str, path: str) -> str:
    """URL of one file of a public GitHub repository at a fixed commit."""
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


# Converter: upstream file (as downloaded) -> placed file; the converters are in .converters.
Converter = Callable[[Path, Path], None]


@dataclass(frozen=True)
class DataFile:
    """One file of a data set.

    relpath: path inside the data set's folder (``$GENAILAB_DATA/<folder>/<relpath>``).
    sha256: hash of the verified copy (``PROVENANCE.md`` checksum table); None if unknown.
    url: canonical public URL of the upstream file this file is (or is made from).
    url_hash: pooch-style hash (``"sha256:..."``/``"md5:..."``) of the file at ``url``, when known.
    description: what the file holds.
    converted: True when the placed file is a conversion of the file at ``url``.
    converter: upstream file -> placed file, for conversions short enough to run on download.
    required: whether the loader reads it (``source/`` files are provenance, not required).
    """

    relpath: str
    sha256: str | None
    url: str
    url_hash: str | None
    description: str
    converted: bool = False
    converter: Converter | None = field(default=None, compare=False, repr=False)
    required: bool = True

    @property
    def downloadable(self) -> bool:
        """True when the file can be rebuilt from its URL without manual steps."""
        return not self.converted or self.converter is not None

    @property
    def local_hash(self) -> str | None:
        """sha256 a local copy must have (the upstream hash if the file is byte-identical)."""
        if self.sha256 is not None:
            return f"sha256:{self.sha256}"
        return None if self.converted else self.url_hash


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: where it lives on disk, where it comes from, how to cite it."""

    name: str
    folder: str
    title: str
    files: tuple[DataFile, ...]
    citation: str
    licence: str
    url: str

    def file(self, relpath: str) -> DataFile:
        """The entry for ``relpath``; KeyError listing the data set's files otherwise."""
        for entry in self.files:
            if entry.relpath == relpath:
                return entry
        raise KeyError(
            f"Data set {self.name!r} has no file {relpath!r}; its files are: "
            + ", ".join(f.relpath for f in self.files)
            + "."
        )

def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``; :class:`UnknownDatasetError` listing valid names otherwise."""
    from .catalog import REGISTRY

    if name not in REGISTRY:
        raise UnknownDatasetError(f"Unknown data set {name!r}. Valid names are: {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name]


def data_dir() -> Path | None:
    """The folder named by ``$GENAILAB_DATA``, or None when the variable is unset."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The download cache: ``$GENAILAB_CACHE`` or ``~/.cache/genailab``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def offline() -> bool:
    """True when ``GENAILAB_OFFLINE`` is set to a true value (1, true, yes)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes"}


def check_hash(path: str | Path, expected: str) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has hash ``expected`` (``"sha256:..."`` or ``"md5:..."``)."""
    import pooch

    algorithm, _, value = expected.partition(":")
    actual = pooch.file_hash(str(path), alg=algorithm)
    if actual != value:
        raise ChecksumError(
            f"{path} has {algorithm} {actual}, but the registry expects {value}. The file is corrupt, truncated "
            "or a different version: delete it and place a verified copy (or let it be downloaded again)."
        )


def _local_candidates(spec: DatasetSpec, relpath: str) -> list[Path]:
    """Where a copy may already be: ``$GENAILAB_DATA/<folder>/`` then the cache."""
    candidates = []
    root = data_dir()
    if root is not None:
        candidates.append(root / spec.folder / relpath)
    candidates.append(cache_dir() / spec.folder / relpath)
    return candidates


def _not_found_message(spec: DatasetSpec, entry: DataFile, looked: list[Path], reason: str) -> str:
    root = data_dir()
    target = (
        (root / spec.folder / entry.relpath)
        if root is not None
        else Path("<GENAILAB_DATA>") / spec.folder / entry.relpath
    )
    if not entry.downloadable:
        how = (
            "The file is made from that upstream file by the conversion in data/README.md; run it and place the result."
        )
    elif entry.converted:
        how = "With downloads allowed the loader fetches and converts it; by hand, see data/README.md."
    else:
        how = "Download that file as is (or let the loader do it, with downloads allowed)."
    return (
        f"Data set {spec.name!r} needs {entry.relpath!r}, which was not found ({reason}). "
        f"Looked in: {', '.join(str(p) for p in looked) or 'nowhere'}. "
        f"Canonical source: {entry.url}. {how} "
        f"Put the file at {target}, i.e. in the folder '{spec.folder}/' under the directory named by the "
        f"{DATA_ENV} environment variable (export {DATA_ENV}=/path/to/data), or pass path= to the loader. "
        f"Data set page: {spec.url}."
    )


def resolve_file(name: str, relpath: str, path: str | Path | None = None, verify: bool = False) -> Path:
    """Local path of file ``relpath`` of data set ``name``, downloading it if needed and allowed.

    path: explicit location: the file itself, or a folder holding ``relpath``.
    verify: check the sha256 of a local copy against the registry (slow for large files).
    Raises :class:`DataNotFoundError` (a FileNotFoundError) with the URL and target folder when
    there is no copy and no download; :class:`ChecksumError` when ``verify`` finds a mismatch.
    """
    spec = get_spec(name)
    entry = spec.file(relpath)
    if path is not None:
        explicit = Path(path).expanduser()
        found = explicit / relpath if explicit.is_dir() else explicit
        if not found.is_file():
            raise DataNotFoundError(_not_found_message(spec, entry, [found], "the explicit path= does not hold it"))
        return _verified(found, entry) if verify else found
    looked = _local_candidates(spec, relpath)
    for candidate in looked:
        if candidate.is_file():
            return _verified(candidate, entry) if verify else candidate
    if offline():
        raise DataNotFoundError(_not_found_message(spec, entry, looked, f"downloads are off: {OFFLINE_ENV}=1"))
    if not entry.downloadable:
        raise DataNotFoundError(_not_found_message(spec, entry, looked, "it cannot be downloaded as such"))
    return download_file(spec, entry, looked)


def _verified(path: Path, entry: DataFile) -> Path:
    if entry.local_hash is not None:
        check_hash(path, entry.local_hash)
    return path


def download_file(spec: DatasetSpec, entry: DataFile, looked: list[Path] | None = None) -> Path:
    """Fetch ``entry`` into the cache with pooch (hash-checked), converting it when needed."""
    import pooch

    target = cache_dir() / spec.folder / entry.relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    upstream_dir = cache_dir() / spec.folder / "_upstream"
    try:
        fetched = Path(
            pooch.retrieve(
                entry.url,
                known_hash=entry.url_hash,
                fname=Path(entry.url.split("?")[0]).name if entry.converted else target.name,
                path=upstream_dir if entry.converted else target.parent,
                progressbar=False,
            )
        )
    except Exception as err:  # network errors come in many types; all mean "no copy"
        raise DataNotFoundError(_not_found_message(spec, entry, looked or [], f"the download failed: {err}")) from err
    if not entry.converted:
        if fetched != target:
            fetched.replace(target)
        return target
    partial = target.with_name(target.name + ".partial")
    entry.converter(fetched, partial)
    partial.replace(target)
    return target


def verify_dataset(name: str, path: str | Path | None = None) -> list[Path]:
    """Check the sha256 of every local file of data set ``name``; return the paths checked.

    path: a folder holding the data set's files (default: the normal resolution, no download).
    Required files that are missing raise :class:`DataNotFoundError`; optional ones (``source/``
    provenance copies) are checked when present. A mismatch raises :class:`ChecksumError`.
    """
    spec = get_spec(name)
    checked = []
    for entry in spec.files:
        candidates = (
            [Path(path).expanduser() / entry.relpath] if path is not None else _local_candidates(spec, entry.relpath)
        )
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            if entry.required:
                raise DataNotFoundError(
                    _not_found_message(spec, entry, candidates, "verify_dataset found no local copy")
                )
            continue
        if entry.local_hash is None:
            continue
        check_hash(found, entry.local_hash)
        checked.append(found)
    return checked


VERIFIED, MISMATCH, MISSING = "present, verified", "present, hash mismatch", "missing"


@dataclass(frozen=True)
class DatasetStatus:
    """What :func:`dataset_status` found for one data set (no download, no exception).

    state: :data:`VERIFIED`, :data:`MISMATCH` (a local copy whose hash differs; it wins over
    missing files) or :data:`MISSING` (a required file has no local copy).
    folder: where the copies are, or (when missing) the folder to put the files in.
    """

    name: str
    state: str
    folder: Path
    missing: tuple[DataFile, ...] = ()
    mismatched: tuple[Path, ...] = ()


def dataset_status(name: str) -> DatasetStatus:
    """Look for every file of ``name`` in ``$GENAILAB_DATA`` and the cache and check the hashes of those found."""
    spec = get_spec(name)
    missing, mismatched, found_in = [], [], []
    for entry in spec.files:
        found = next((c for c in _local_candidates(spec, entry.relpath) if c.is_file()), None)
        if found is None:
            missing += [entry] if entry.required else []
            continue
        found_in.append(found.parents[len(Path(entry.relpath).parts) - 1])
        try:
            _verified(found, entry)
        except ChecksumError:
            mismatched.append(found)
    root = data_dir()
    target = (root if root is not None else Path(f"${DATA_ENV}")) / spec.folder
    state = MISMATCH if mismatched else MISSING if missing else VERIFIED
    folder = target if missing or not found_in else found_in[0]
    return DatasetStatus(name, state, folder, tuple(missing), tuple(mismatched))


def fetch_dataset(name: str) -> list[Path]:
    """Resolve every required file of ``name`` (local copies hash-checked, else downloaded); return the paths."""
    spec = get_spec(name)
    return [resolve_file(name, entry.relpath, verify=True) for entry in spec.files if entry.required]


def __getattr__(name: str):
    """``REGISTRY`` is importable from this module too; looked up lazily because :mod:`.catalog`, which
    builds it, imports this module (for the types and errors above)."""
    if name == "REGISTRY":
        from .catalog import REGISTRY
        return REGISTRY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
