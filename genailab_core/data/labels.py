"""Perturbation labels, parsed in one place: "control", "A", "A+B" (targets joined by "+").

Labels are strings only at the data boundary. A label is *canonical* when its targets are sorted and
distinct, so that "B+A" and "A+B" name one perturbation; every loader and the simulator pass their
labels through :func:`canonical_label`, and models receive the targets as index tensors
(:class:`~genailab_core.models.perturbation.TargetVocabulary`).
"""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

CONTROL = "control"
SEPARATOR = "+"


def targets_of(label: str, control: str = CONTROL) -> tuple[str, ...]:
    """Target genes of a perturbation label: "control" -> (), "A" -> ("A",), "B+A" -> ("A", "B") (sorted)."""
    label = str(label)
    if label == control:
        return ()
    genes = label.split(SEPARATOR)
    if any(not g.strip() or g != g.strip() for g in genes) or control in genes:
        raise ValueError(f"Malformed perturbation label {label!r}; expected {control!r}, 'A' or 'A+B' "
                         "(gene symbols joined by '+', no spaces, no empty targets).")
    if len(set(genes)) != len(genes):
        raise ValueError(f"Perturbation label {label!r} names a target twice.")
    return tuple(sorted(genes))


def label_of(targets: Iterable[str], control: str = CONTROL) -> str:
    """The canonical label of a set of targets: () -> "control", ("B", "A") -> "A+B"."""
    targets = tuple(sorted(str(t) for t in targets))
    return SEPARATOR.join(targets) if targets else control


def canonical_label(label: str, control: str = CONTROL) -> str:
    """"B+A" -> "A+B"; "control" and single targets unchanged; malformed labels raise ValueError."""
    return label_of(targets_of(label, control), control)


def canonical_labels(labels: Iterable[str], control: str = CONTROL) -> pd.Series:
    """:func:`canonical_label` of each label (parsed once per distinct label), as a string Series."""
    labels = pd.Series(list(labels), dtype=object).astype(str)
    mapping = {label: canonical_label(label, control) for label in pd.unique(labels)}
    return labels.map(mapping)
