"""Interactive explorers (ipywidgets) with a static fallback for the rendered book.

In a live Jupyter or Colab kernel the explorer is a set of sliders. When a notebook is executed
without a person at it (the book build, nbval, papermill: they set ``GENAILAB_STATIC=1``) the
explorer draws the same figure for a fixed grid of settings instead, so the rendered page shows
what the sliders would.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

STATIC_ENV = "GENAILAB_STATIC"


def is_static() -> bool:
    """True when no one can move a slider: ``$GENAILAB_STATIC`` set, or no IPython kernel."""
    if os.environ.get(STATIC_ENV, "") not in ("", "0"):
        return True
    try:
        from IPython import get_ipython
        return get_ipython() is None or not hasattr(get_ipython(), "kernel")
    except ImportError:
        return True


@torch.no_grad()
def decode_means(model, z: torch.Tensor, library: float = 1e4) -> np.ndarray:
    """Expected expression E[x | z] at a fixed library size. z: (n, latent) -> (n, genes)."""
    lib = torch.full((z.shape[0], 1), float(library), device=z.device)
    return model.decode(z, lib).mean.cpu().numpy()


def latent_explorer(model, z_reference: torch.Tensor, gene_names: Sequence[str], genes: Sequence[str],
                    dims: Sequence[int] = (0, 1), span: float = 2.5, library: float = 1e4,
                    static: bool | None = None):
    """Move along latent dimensions from the mean cell and watch marker genes respond.

    z_reference: (cells, latent) posterior means; the explorer starts at their mean and each slider
    moves one latent coordinate across +/- ``span`` standard deviations of the reference cells.
    Static mode: a figure of each marker's decoded mean along each chosen dimension.
    """
    names = list(gene_names)
    missing = [g for g in genes if g not in names]
    if missing:
        raise ValueError(f"Genes {missing} are not among the model's genes; pick from model.gene_names.")
    idx = [names.index(g) for g in genes]
    device = z_reference.device
    return traversal_explorer(lambda z: decode_means(model, z.to(device), library)[:, idx],
                              z_reference.mean(0), z_reference.std(0), dims, list(genes), span=span,
                              ylabel=f"decoded mean count (library {library:.0f})", static=static, log=True)


def traversal_explorer(readout: Callable[[torch.Tensor], np.ndarray], center: torch.Tensor, spread: torch.Tensor,
                       dims: Sequence[int], names: Sequence[str], span: float = 2.5, n_steps: int = 21,
                       ylabel: str = "readout", static: bool | None = None, title: str = "", log: bool = False):
    """Traverse latent dimensions and watch any readouts of the decoded cell (a generic explorer).

    readout: z (n, latent) -> (n, len(names)) numbers, e.g. decoded marker genes or the projection of
    the decoded profile on known ground-truth directions. center, spread: (latent,) start point and
    step unit; each latent in ``dims`` moves over center +/- ``span`` * spread. Live: one slider per
    dimension and a bar chart of the readouts; static (the book): one panel per dimension with a
    curve per readout, the grid of one-at-a-time traversals (Higgins et al. 2017, fig. 7).
    ``log`` draws readouts on a log axis.
    """
    center, spread = center.detach().float().cpu(), spread.detach().float().cpu()
    if (is_static() if static is None else static):
        return _static_grid(readout, center, spread, dims, names, span, n_steps, ylabel, title, log)
    return _sliders(readout, center, spread, dims, names, span, ylabel, title, log)


def _static_grid(readout, center, spread, dims, names, span, n_steps, ylabel, title, log) -> plt.Figure:
    steps = torch.linspace(-span, span, n_steps)
    fig, axes = plt.subplots(1, len(dims), figsize=(2.6 * len(dims) + 1.2, 2.9), sharey=True, squeeze=False)
    for ax, d in zip(axes[0], dims):
        z = center.repeat(n_steps, 1)
        z[:, d] = center[d] + steps * spread[d]
        values = np.asarray(readout(z))                                 # (steps, readouts)
        for j, name in enumerate(names):
            ax.plot(steps.numpy(), values[:, j], label=name, color=f"C{j}")
        ax.set(xlabel=f"z[{d}] (units of spread)", title=f"traverse z[{d}]", yscale="log" if log else "linear")
    axes[0, 0].set_ylabel(ylabel)
    axes[0, -1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    if title:
        fig.suptitle(title)
    plt.show()
    return fig


def _sliders(readout, center, spread, dims, names, span, ylabel, title, log):
    import ipywidgets as widgets
    from IPython.display import display

    sliders = {d: widgets.FloatSlider(value=0.0, min=-span, max=span, step=0.1, description=f"z[{d}]")
               for d in dims}
    out = widgets.Output()

    def redraw(_=None) -> None:
        z = center.clone()[None, :]
        for d, slider in sliders.items():
            z[0, d] = center[d] + slider.value * spread[d]
        values = np.asarray(readout(z))[0]
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5, 3))
            ax.bar(list(names), values, color=[f"C{j}" for j in range(len(names))])
            ax.set(ylabel=ylabel, title=title or "readouts of the decoded cell", yscale="log" if log else "linear")
            plt.show()

    for slider in sliders.values():
        slider.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox(list(sliders.values())), out])
    display(box)
    return box
