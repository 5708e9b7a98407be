"""The catalog: every data set the book reads, as a :class:`~.registry.DatasetSpec` in :data:`REGISTRY`.

The entries are data, in ``genailab_core/resources/datasets.toml`` (its header describes the
fields): each data set's folder under ``$GENAILAB_DATA``, canonical public page, citation and
licence, and its files with the sha256 of the verified copy (``PROVENANCE.md`` checksum table)
and the canonical URL each comes from. This module reads that file, names the download-time
conversions (:data:`CONVERTERS`, from :mod:`.converters` and :mod:`.converters_r`) and checks
every entry. How a file is then found, downloaded and checked is :mod:`.registry`'s job.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from .converters import _extract_tar_member, convert_10x_tarball, convert_perturbench_devel, convert_rcppml_meta
from .converters_r import (
    convert_abcdata_bulk,
    convert_muscat_sce,
    convert_sceptre_lowmoi,
    convert_seurat_ifnb1k,
    convert_tradeseq_se,
)
from .registry import Converter, DataFile, DatasetSpec, github_raw

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as the tomli package
    import tomli as tomllib

CATALOG_FILE = "resources/datasets.toml"  # inside the package

# Converter name in the catalog -> the conversion. "extract_tar_member" is a factory: it takes the
# file's `member` (the archive member to copy out) and returns the converter.
CONVERTERS: dict[str, Any] = {
    "convert_10x_tarball": convert_10x_tarball,
    "convert_rcppml_meta": convert_rcppml_meta,
    "convert_perturbench_devel": convert_perturbench_devel,
    "convert_seurat_ifnb1k": convert_seurat_ifnb1k,
    "convert_muscat_sce": convert_muscat_sce,
    "convert_sceptre_lowmoi": convert_sceptre_lowmoi,
    "convert_tradeseq_se": convert_tradeseq_se,
    "convert_abcdata_bulk": convert_abcdata_bulk,
    "extract_tar_member": _extract_tar_member,
}
_TAKES_MEMBER = {"extract_tar_member"}

_SPEC_FIELDS = ("name", "folder", "title", "citation", "licence", "url")
_FILE_REQUIRED = ("relpath", "sha256", "url_hash", "description")
_FILE_OPTIONAL = {"url", "repo", "commit", "path", "converted", "converter", "member", "required"}


class CatalogError(ValueError):
    """An entry of the catalog file is malformed; the message names the data set and the file."""


def _field(table: dict, key: str, where: str, kind: type = str) -> Any:
    if key not in table:
        raise CatalogError(f"{where}: missing field {key!r}.")
    if not isinstance(table[key], kind):
        raise CatalogError(f"{where}: field {key!r} must be a {kind.__name__}, not {table[key]!r}.")
    return table[key]


def _converter(table: dict, where: str) -> Converter | None:
    name = table.get("converter")
    if name is None:
        if "member" in table:
            raise CatalogError(f"{where}: 'member' is only for converter = \"extract_tar_member\".")
        return None
    if name not in CONVERTERS:
        raise CatalogError(f"{where}: unknown converter {name!r}; known converters: {', '.join(CONVERTERS)}.")
    if not table.get("converted", False):
        raise CatalogError(f"{where}: a file with a converter must have converted = true.")
    if name in _TAKES_MEMBER:
        return CONVERTERS[name](_field(table, "member", where))
    if "member" in table:
        raise CatalogError(f"{where}: converter {name!r} takes no 'member'.")
    return CONVERTERS[name]


def _url(table: dict, where: str) -> str:
    github = [key for key in ("repo", "commit", "path") if key in table]
    if "url" in table and github:
        raise CatalogError(f"{where}: give either 'url' or 'repo', 'commit' and 'path', not both.")
    if "url" in table:
        return _field(table, "url", where)
    if not github:
        raise CatalogError(f"{where}: missing field 'url' (or 'repo', 'commit' and 'path' of a GitHub file).")
    return github_raw(*(_field(table, key, where) for key in ("repo", "commit", "path")))


def _data_file(table: dict, dataset: str) -> DataFile:
    where = f"data set {dataset!r}, file {table.get('relpath', '<no relpath>')!r}"
    relpath, sha256, url_hash, description = (_field(table, key, where) for key in _FILE_REQUIRED)
    unknown = set(table) - set(_FILE_REQUIRED) - _FILE_OPTIONAL
    if unknown:
        raise CatalogError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}.")
    if sha256 and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)):
        raise CatalogError(f"{where}: sha256 must be 64 lower-case hex digits (or \"\" when not recorded).")
    return DataFile(
        relpath,
        sha256 or None,
        _url(table, where),
        url_hash or None,
        description,
        converted=_field({"converted": False} | table, "converted", where, bool),
        converter=_converter(table, where),
        required=_field({"required": True} | table, "required", where, bool),
    )


def parse_catalog(text: str) -> dict[str, DatasetSpec]:
    """The data sets of a catalog in TOML (the format of ``datasets.toml``), by name, in file order.

    Raises :class:`CatalogError` naming the data set and file of the first malformed entry.
    """
    catalog: dict[str, DatasetSpec] = {}
    for number, table in enumerate(tomllib.loads(text).get("dataset", []), start=1):
        where = f"data set {table.get('name', f'#{number} (no name)')!r}"
        name, folder, title, citation, licence, url = (_field(table, key, where) for key in _SPEC_FIELDS)
        unknown = set(table) - set(_SPEC_FIELDS) - {"file"}
        if unknown:
            raise CatalogError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}.")
        if name in catalog:
            raise CatalogError(f"{where}: the name is used twice.")
        files = tuple(_data_file(entry, name) for entry in table.get("file", []))
        if not files:
            raise CatalogError(f"{where}: no [[dataset.file]] entries.")
        catalog[name] = DatasetSpec(name, folder, title, files, citation, licence, url)
    return catalog


def load_catalog() -> dict[str, DatasetSpec]:
    """The data sets of the catalog file shipped with the package (``genailab_core/resources``)."""
    text = resources.files("genailab_core").joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    try:
        return parse_catalog(text)
    except (CatalogError, tomllib.TOMLDecodeError) as err:
        raise CatalogError(f"{CATALOG_FILE}: {err}") from err


REGISTRY: dict[str, DatasetSpec] = load_catalog()
