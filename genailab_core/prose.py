"""Prose that the run writes: no number is typed into a chapter's Markdown (DESIGN.md section 4).

A chapter states its results in Markdown printed by a code cell, formatted from the run's variables, so
the text cannot drift from the numbers. Three pieces:

- :func:`markdown`: display a Markdown string (rendered by Jupyter, Colab and the book alike);
- :func:`verdict`: "beats", "ties with" or "loses to", from means and standard errors, so that a
  difference within the noise is called a tie;
- :func:`key_results`: the "Key results" box at the head of a chapter's results section.

    gl.prose.markdown(f"The NB beats the Poisson by **{gain:.1f} nats** per held-out cell.")
    gl.prose.key_results([f"NB-VAE {verdict(nb, nb_se, pca, pca_se)} PCA on kNN accuracy ..."], run.profile)
"""
from __future__ import annotations

import math
from typing import Sequence

VERDICTS = ("beats", "ties with", "loses to")


def markdown(text: str) -> None:
    """Display ``text`` as Markdown in the notebook (and so in the rendered book).

    Returns None, so that a call on a cell's last line is not shown a second time as the cell's value.
    """
    from IPython.display import Markdown, display

    display(Markdown(text))


def verdict(ours: float, ours_se: float, baseline: float, baseline_se: float = 0.0,
            higher_is_better: bool = True, z: float = 2.0) -> str:
    """"beats", "ties with" or "loses to": ours against a baseline, each a mean with its standard error.

    A tie when |ours - baseline| <= z * sqrt(se_ours^2 + se_baseline^2) (two independent means; z = 2 is
    about a 95% interval). Standard errors must be >= 0 and finite; with both 0 any difference decides.
    """
    for name, value in (("ours_se", ours_se), ("baseline_se", baseline_se)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite standard error >= 0, got {value}; with one seed there is "
                             "no standard error: run at least 3 seeds before calling a verdict.")
    if not (math.isfinite(ours) and math.isfinite(baseline)):
        raise ValueError(f"verdict needs finite means, got ours={ours}, baseline={baseline}.")
    difference = (ours - baseline) if higher_is_better else (baseline - ours)
    noise = z * math.hypot(ours_se, baseline_se)
    if abs(difference) <= noise:
        return "ties with"
    return "beats" if difference > 0 else "loses to"


def key_results(lines: Sequence[str], profile: str, full_profile_note: str | None = None) -> None:
    """Display the chapter's "Key results" box (:func:`key_results_markdown`)."""
    markdown(key_results_markdown(lines, profile, full_profile_note))


def key_results_markdown(lines: Sequence[str], profile: str, full_profile_note: str | None = None) -> str:
    """The "Key results" box as Markdown: one bullet per line, the profile they come from, and what the full
    profile gives where it differs. A block quote, so it renders in Jupyter, Colab and the book alike."""
    if not lines:
        raise ValueError("key_results needs at least one result line.")
    body = [f"> **Key results** (this run, `{profile}` profile)", ">"]
    body += [f"> - {line}" for line in lines]
    if full_profile_note:
        body += [">", f"> *Full profile:* {full_profile_note}"]
    return "\n".join(body)
