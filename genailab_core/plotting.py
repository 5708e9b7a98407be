"""One seaborn theme and the figures chapters share."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def set_theme() -> None:
    """The book's look: seaborn ticks, colourblind palette, readable fonts, tight figures."""
    sns.set_theme(context="notebook", style="ticks", palette="colorblind", font_scale=0.95,
                  rc={"figure.dpi": 110, "savefig.dpi": 150, "axes.spines.right": False,
                      "axes.spines.top": False, "figure.autolayout": True, "legend.frameon": False})


def category_colors(labels: Sequence[str]) -> dict[str, tuple]:
    """A stable colour per category (sorted), so every figure uses the same colours for a label."""
    cats = sorted(pd.unique(pd.Series(labels).dropna().astype(str)))
    palette = sns.color_palette("tab10" if len(cats) <= 10 else "tab20", len(cats))
    return dict(zip(cats, palette))


def plot_embedding(coords: np.ndarray, labels: Sequence[str], ax: plt.Axes | None = None, title: str = "",
                   s: float = 4.0, legend: bool = True) -> plt.Axes:
    """Scatter a 2-D embedding (cells, 2) coloured by categorical ``labels``."""
    ax = ax or plt.subplots(figsize=(5, 4.2))[1]
    labels = pd.Series(np.asarray(labels)).astype(str)
    colors = category_colors(labels)
    for cat, color in colors.items():
        keep = (labels == cat).to_numpy()
        ax.scatter(coords[keep, 0], coords[keep, 1], s=s, color=color, label=cat, linewidths=0, rasterized=True)
    ax.set(xticks=[], yticks=[], title=title)
    if legend:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=3, fontsize=8)
    return ax


def plot_history(history: pd.DataFrame, columns: Sequence[str] = ("train_loss", "val_loss"),
                 ax: plt.Axes | None = None, title: str = "") -> plt.Axes:
    """Training curves from ``fit``'s history DataFrame (one line per column present)."""
    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    for column in columns:
        if column in history:
            ax.plot(history["epoch"], history[column], label=column.replace("_", " "))
    ax.set(xlabel="epoch", ylabel="loss (nats per cell)", title=title)
    ax.legend()
    return ax


def plot_observed_vs_expected(observed: np.ndarray, expected: dict[str, np.ndarray], ax: plt.Axes | None = None,
                              xlabel: str = "observed", ylabel: str = "expected", log: bool = False,
                              title: str = "", s: float = 5.0) -> plt.Axes:
    """One scatter per model of expected vs observed values (e.g. zero rates), with the identity line."""
    ax = ax or plt.subplots(figsize=(4.5, 4))[1]
    for name, values in expected.items():
        ax.scatter(observed, values, s=s, alpha=0.5, label=name, linewidths=0, rasterized=True)
    finite = np.concatenate([np.asarray(observed).ravel()] + [np.asarray(v).ravel() for v in expected.values()])
    finite = finite[np.isfinite(finite) & ((finite > 0) if log else True)]
    lo, hi = finite.min(), finite.max()
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--", label="identity")
    if log:
        ax.set(xscale="log", yscale="log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(markerscale=2)
    return ax
