"""Perturbation labels, parsed in one place: "control", "A", "A+B" (targets joined by "+").

Labels are strings only at the data boundary. A label is *canonical* when its targets are sorted and
distinct, so that "B+A" and "A+B" name one perturbation; every loader and the simulator pass their
labels through :func:`canonical_label`, and models receive the targets as padded index tensors
(:class:`TargetVocabulary`), the last place a label is parsed.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import torch

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


class TargetVocabulary:
    """Target gene -> index (1..n; 0 pads), and labels -> padded index tensors.

    genes: every target gene the model may meet (of training *and* test perturbations, so that
    an unseen gene has an embedding row, one that training never updates).
    """

    def __init__(self, genes: Iterable[str], max_targets: int = 2):
        self.genes = sorted(set(genes))
        self.index = {g: i + 1 for i, g in enumerate(self.genes)}
        self.max_targets = max_targets

    @classmethod
    def from_labels(cls, labels: Iterable[str], control: str = CONTROL) -> TargetVocabulary:
        """Vocabulary of every target gene in perturbation labels ("control", "A", "A+B")."""
        names = set(pd.unique(pd.Series(list(labels), dtype=object).astype(str)))
        genes = {g for name in names for g in targets_of(name, control)}
        return cls(genes, max_targets=max([len(targets_of(n, control)) for n in names] + [1]))

    def __len__(self) -> int:
        return len(self.genes)

    def encode(self, labels: Sequence[str], control: str = CONTROL) -> torch.Tensor:
        """labels: (n,) -> long (n, max_targets), 0-padded; "control" is all zeros (the empty set)."""
        out = torch.zeros(len(labels), self.max_targets, dtype=torch.long)
        for row, label in enumerate(labels):
            genes = targets_of(label, control)
            if len(genes) > self.max_targets:
                raise ValueError(f"{label!r} has {len(genes)} targets; this vocabulary allows {self.max_targets}.")
            unknown = [g for g in genes if g not in self.index]
            if unknown:
                raise KeyError(f"Unknown target gene(s) {unknown} in {label!r}; build the vocabulary from every "
                               "perturbation label of the data set (TargetVocabulary.from_labels).")
            out[row, : len(genes)] = torch.tensor([self.index[g] for g in genes])
        return out
