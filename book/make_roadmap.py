"""Draw the roadmap of GenAI Lab: every planned chapter, grouped by part.

Writes ``book/images/roadmap.svg`` (the figure on the book's first page). Chapters
that are available in this release are filled; planned chapters have a dashed
outline. Arrows are the main "builds on" dependencies between chapters.

Run from the repository root (or anywhere):

    python book/make_roadmap.py                  # writes book/images/roadmap.svg
    python book/make_roadmap.py --png /tmp/r.png # also writes a PNG preview

Layout: Parts I-IV are columns of chapter boxes (one or two sub-columns per
part); Part V (the Perturb-seq flagship) and Part VI (applications) are bands
below them, placed so that the chapters feeding the flagship sit straight above
the chapter they feed. All positions are in inches.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402

def available_chapters(toc: Path = Path(__file__).resolve().parents[1] / "_toc.yml") -> frozenset[str]:
    """Numbers of the chapters listed in _toc.yml: the ones in this release."""
    import re
    return frozenset(re.findall(r"chapters/(\d\d)_", toc.read_text()))


AVAILABLE = available_chapters()

BOX_W, BOX_H = 1.36, 0.56  # chapter box size (inches)
COL_PITCH, ROW_PITCH = 1.57, 0.84  # distance between box centres
PAD = 0.09  # padding between a box and its part's shaded area (vertical)
SIDE_PAD = 0.06  # the same, horizontal (leaves a gap between neighbouring parts)
LEFT = 0.30  # left margin to the first box edge
HEADER_H = 0.66  # room above the first row of Parts I-IV for a part header
BAND_LABEL_H = 0.34  # room under a band's boxes for its label
LANE_GAP = 0.50  # vertical gap between Parts I-IV and Part V (the feed lane runs in it)
BAND_GAP = 0.30  # vertical gap between Part V and Part VI
BOTTOM = 0.12  # bottom margin

BAND_VI_Y = BOTTOM + BAND_LABEL_H + BOX_H / 2  # centre of the Part VI row
BAND_V_Y = BAND_VI_Y + BOX_H / 2 + PAD + BAND_GAP + BAND_LABEL_H + BOX_H / 2  # Part V row
TOP_BOTTOM_ROW_Y = BAND_V_Y + BOX_H / 2 + PAD + LANE_GAP + PAD + BOX_H / 2  # row 3 of Parts I-IV
TOP_ROW_Y = TOP_BOTTOM_ROW_Y + 3 * ROW_PITCH  # row 0 of Parts I-IV
FIG_W = 9.80
FIG_H = TOP_ROW_Y + BOX_H / 2 + HEADER_H + BOTTOM

FONT = 10.0
HEADER_FONT = 9.0
HEADER_LINE = 0.158  # height of one header line (inches) at HEADER_FONT + 0.5 with linespacing 1.1

COLOR_AVAILABLE = "#0b7285"
COLOR_PLANNED_EDGE = "#868e96"
COLOR_TEXT = "#212529"
COLOR_ARROW = "#495057"
COLOR_FEED = "#d9480f"  # arrows from Parts II-IV into the flagship


@dataclass(frozen=True)
class Chapter:
    """One chapter box: number, title (manual line breaks) and centre (x, y) in inches."""

    number: str
    title: str
    x: float
    y: float


@dataclass(frozen=True)
class Part:
    """A shaded group of chapters with a header of up to three lines."""

    name: str
    subtitle: str
    color: str
    x0: float
    x1: float
    y0: float
    y1: float


def col_x(col: float) -> float:
    """Centre x of sub-column `col` of the top area (0 = Part I)."""
    return LEFT + BOX_W / 2 + col * COL_PITCH


def row_y(row: int) -> float:
    """Centre y of row `row` of the top area (0 = top)."""
    return TOP_ROW_Y - row * ROW_PITCH


def chapters() -> dict[str, Chapter]:
    """All 23 planned chapters (DESIGN.md section 2) at their grid positions."""
    spec = [
        # Part I: gene expression as data
        ("01", "Counts and\nnoise models", col_x(0), row_y(0)),
        # Part II: latent-variable models (two sub-columns)
        ("02", "The VAE\nfor counts", col_x(1), row_y(0)),
        ("03", "Conditional\nVAE", col_x(1), row_y(1)),
        ("04", "β-VAE and\ndisentanglement", col_x(2), row_y(0)),
        ("05", "IWAE and\ntighter bounds", col_x(2), row_y(1)),
        # Part III: score, diffusion and flow models (two sub-columns)
        ("06", "Score\nmatching", col_x(3), row_y(0)),
        ("07", "DDPM and\nSDEs", col_x(3), row_y(1)),
        ("10", "Diffusion\ntransformers", col_x(3), row_y(2)),
        ("13", "Backbones\n(MLP, set, SSM)", col_x(3), row_y(3)),
        ("12", "Energy-based\nmodels", col_x(4), row_y(0)),
        ("08", "Guidance", col_x(4), row_y(1)),
        ("09", "Flow\nmatching", col_x(4), row_y(2)),
        ("11", "Latent\ndiffusion", col_x(4), row_y(3)),
        # Part IV: predictive and world models
        ("14", "JEPA", col_x(5), row_y(0)),
        ("15", "World\nmodels", col_x(5), row_y(1)),
        ("16", "Adaptation\n(LoRA, adapters)", col_x(5), row_y(2)),
        # Part V: flagship, a band; 18 sits under 03 and 20 under 11
        ("17", "Perturb-seq\ndata", col_x(0), BAND_V_Y),
        ("18", "Baselines", col_x(1), BAND_V_Y),
        ("19", "JEPA\npredictor", col_x(2.5), BAND_V_Y),
        ("20", "Generative\nresponses", col_x(4), BAND_V_Y),
        ("21", "Benchmark", col_x(5), BAND_V_Y),
        # Part VI: applications, under the flagship's generative chapters
        ("22", "Expression\nfrom metadata", col_x(4), BAND_VI_Y),
        ("23", "Synthetic\ndata", col_x(5), BAND_VI_Y),
    ]
    return {n: Chapter(n, t, x, y) for n, t, x, y in spec}


def parts() -> list[Part]:
    """The six parts as shaded rectangles around their chapters."""
    top = row_y(0) + BOX_H / 2 + HEADER_H
    bottom = row_y(3) - BOX_H / 2 - PAD

    def span(c0: float, c1: float) -> tuple[float, float]:
        return col_x(c0) - BOX_W / 2 - SIDE_PAD, col_x(c1) + BOX_W / 2 + SIDE_PAD

    return [
        Part("Part I", "Gene expression\nas data", "#1971c2", *span(0, 0), bottom, top),
        Part("Part II", "Latent-variable models\ncount-faithful representation", "#0c8599",
             *span(1, 2), bottom, top),
        Part("Part III", "Score, diffusion and flow models\nhigh-fidelity generation", "#e8590c",
             *span(3, 4), bottom, top),
        Part("Part IV", "Predictive and\nworld models", "#7048e8", *span(5, 5), bottom, top),
        Part("Part V", "Flagship: Perturb-seq (Norman et al. 2019)", "#c2255c",
             *span(0, 5), BAND_V_Y - BOX_H / 2 - BAND_LABEL_H, BAND_V_Y + BOX_H / 2 + PAD),
        Part("Part VI", "Applications", "#5c940d",
             *span(4, 5), BAND_VI_Y - BOX_H / 2 - BAND_LABEL_H, BAND_VI_Y + BOX_H / 2 + PAD),
    ]


# Main "builds on" dependencies inside the top area and inside the bands: straight arrows.
LOCAL_EDGES = [
    ("01", "02"),
    ("02", "03"), ("02", "04"), ("02", "05"),
    ("06", "07"), ("06", "12"), ("07", "08"), ("07", "10"), ("07", "09"),
    ("09", "11"), ("10", "11"), ("10", "13"),
    ("14", "15"), ("15", "16"),
    ("17", "18"), ("18", "19"), ("19", "20"), ("20", "21"),
    ("20", "22"), ("20", "23"), ("21", "23"),
]


def anchor(ch: Chapter, side: str) -> tuple[float, float]:
    """Point on the edge of a chapter box: side in {'top', 'bottom', 'left', 'right'}."""
    offsets = {
        "top": (0.0, BOX_H / 2),
        "bottom": (0.0, -BOX_H / 2),
        "left": (-BOX_W / 2, 0.0),
        "right": (BOX_W / 2, 0.0),
    }
    dx, dy = offsets[side]
    return ch.x + dx, ch.y + dy


def straight_ends(a: Chapter, b: Chapter) -> tuple[tuple[float, float], tuple[float, float]]:
    """Edge points for a straight arrow a -> b: same row, same column, or diagonal corner."""
    if abs(a.y - b.y) < 1e-6:
        if b.x > a.x:
            return anchor(a, "right"), anchor(b, "left")
        return anchor(a, "left"), anchor(b, "right")
    if abs(a.x - b.x) < 1e-6:
        return anchor(a, "bottom"), anchor(b, "top")
    # diagonal neighbours: from the lower corner region of a to the upper corner region of b
    sx = 1 if b.x > a.x else -1
    start = (a.x + sx * BOX_W * 0.36, a.y - BOX_H / 2)
    end = (b.x - sx * BOX_W * 0.36, b.y + BOX_H / 2)
    return start, end


def draw_arrow(ax, points: list[tuple[float, float]], color: str, width: float = 1.3,
               halo: bool = False) -> None:
    """Arrow along a polyline (points in inches), head at the last point.

    halo=True draws a white outline under the arrow, so that where it crosses
    another arrow it reads as passing over it.
    """
    codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(points) - 1)
    arrow = FancyArrowPatch(
        path=MplPath(points, codes),
        arrowstyle="-|>,head_length=5,head_width=3",
        color=color,
        linewidth=width,
        shrinkA=0,
        shrinkB=1.5,
        joinstyle="round",
        capstyle="round",
        zorder=2.5 if halo else 2,
    )
    if halo:
        arrow.set_path_effects([patheffects.withStroke(linewidth=width + 5, foreground="white"),
                                patheffects.Normal()])
    ax.add_patch(arrow)


def draw_box(ax, ch: Chapter) -> None:
    """A chapter box: filled if available, dashed outline if planned."""
    available = ch.number in AVAILABLE
    box = FancyBboxPatch(
        (ch.x - BOX_W / 2, ch.y - BOX_H / 2), BOX_W, BOX_H,
        boxstyle="round,pad=0,rounding_size=0.07",
        facecolor=COLOR_AVAILABLE if available else "white",
        edgecolor=COLOR_AVAILABLE if available else COLOR_PLANNED_EDGE,
        linewidth=1.6 if available else 1.0,
        linestyle="-" if available else (0, (3, 2)),
        zorder=3,
    )
    ax.add_patch(box)
    lines = ch.title.split("\n")
    label = f"$\\mathbf{{{ch.number}}}$  {lines[0]}" + "".join("\n" + line for line in lines[1:])
    ax.text(ch.x, ch.y, label, ha="center", va="center", fontsize=FONT, linespacing=1.15,
            color="white" if available else COLOR_TEXT,
            fontweight="bold" if available else "normal", zorder=4)


def draw_part(ax, part: Part) -> None:
    """Shaded rounded rectangle with the part name (bold) and subtitle at its top-left."""
    ax.add_patch(FancyBboxPatch(
        (part.x0, part.y0), part.x1 - part.x0, part.y1 - part.y0,
        boxstyle="round,pad=0,rounding_size=0.12",
        facecolor=part.color, alpha=0.08, edgecolor="none", zorder=0,
    ))
    ax.add_patch(FancyBboxPatch(
        (part.x0, part.y0), part.x1 - part.x0, part.y1 - part.y0,
        boxstyle="round,pad=0,rounding_size=0.12",
        facecolor="none", edgecolor=part.color, alpha=0.55, linewidth=1.0, zorder=0,
    ))
    name = f"$\\mathbf{{{part.name.replace(' ', '~')}}}$"
    if part.y1 < TOP_BOTTOM_ROW_Y:  # a band: one-line label under its boxes, arrows come from above
        ax.text(part.x0 + 0.1, part.y0 + 0.08, f"{name}   {part.subtitle}", ha="left", va="bottom",
                fontsize=HEADER_FONT + 0.5, color=part.color, zorder=1)
        return
    first, *rest = part.subtitle.split("\n")
    text = f"{name}\n{first}"
    ax.text(part.x0 + 0.1, part.y1 - 0.07, text, ha="left", va="top",
            fontsize=HEADER_FONT + 0.5, linespacing=1.1, color=part.color, zorder=1)
    if rest:
        style = "italic" if part.x1 - part.x0 > 1.5 * COL_PITCH else "normal"  # a tagline
        ax.text(part.x0 + 0.1, part.y1 - 0.07 - 2 * HEADER_LINE, rest[0], ha="left", va="top",
                fontsize=HEADER_FONT, style=style, color=part.color, zorder=1)


def feed_routes(ch: dict[str, Chapter]) -> list[list[tuple[float, float]]]:
    """Orthogonal routes of the arrows that feed the flagship from Parts II-IV.

    14 -> 19 runs down the right margin and along the lane above Part V (drawn
    first); 03 -> 18 and 11 -> 20 drop straight down their own column (nothing
    lies below them) and pass over the lane.
    """
    gap_y = BAND_V_Y + BOX_H / 2 + PAD + LANE_GAP / 2  # the lane between Parts I-IV and Part V
    margin_x = ch["14"].x + BOX_W / 2 + SIDE_PAD + 0.12
    c03, c11, c14, c19 = ch["03"], ch["11"], ch["14"], ch["19"]
    return [
        [anchor(c14, "right"), (margin_x, c14.y), (margin_x, gap_y), (c19.x, gap_y),
         (c19.x, c19.y + BOX_H / 2)],
        [anchor(c03, "bottom"), (ch["18"].x, ch["18"].y + BOX_H / 2)],
        [anchor(c11, "bottom"), (ch["20"].x, ch["20"].y + BOX_H / 2)],
    ]


def draw_legend(ax) -> None:
    """Legend, two columns by two rows, in the free space left of Part VI."""
    rows = (BAND_VI_Y + 0.20, BAND_VI_Y - 0.26)
    cols = (LEFT, LEFT + 2.75)
    swatch = dict(width=0.42, height=0.26, boxstyle="round,pad=0,rounding_size=0.05")

    def label(x: float, y: float, text: str) -> None:
        ax.text(x + 0.55, y, text, va="center", fontsize=FONT - 0.5, color=COLOR_TEXT)

    (x, y) = cols[0], rows[0]
    ax.add_patch(FancyBboxPatch((x, y - 0.13), facecolor=COLOR_AVAILABLE, edgecolor=COLOR_AVAILABLE,
                                linewidth=1.4, **swatch))
    label(x, y, "available in this release")
    (x, y) = cols[0], rows[1]
    ax.add_patch(FancyBboxPatch((x, y - 0.13), facecolor="white", edgecolor=COLOR_PLANNED_EDGE,
                                linewidth=1.0, linestyle=(0, (3, 2)), **swatch))
    label(x, y, "planned")
    (x, y) = cols[1], rows[0]
    draw_arrow(ax, [(x, y), (x + 0.42, y)], COLOR_ARROW)
    label(x, y, "builds on")
    (x, y) = cols[1], rows[1]
    draw_arrow(ax, [(x, y), (x + 0.42, y)], COLOR_FEED, width=1.6)
    label(x, y, "feeds the flagship")


def draw_roadmap() -> plt.Figure:
    """The whole figure, in inch coordinates."""
    plt.rcParams.update({"font.family": "DejaVu Sans", "svg.hashsalt": "genailab-roadmap",
                         "mathtext.default": "regular"})
    fig = plt.figure(figsize=(FIG_W, FIG_H))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, FIG_W)
    ax.set_ylim(0, FIG_H)
    ax.set_axis_off()

    ch = chapters()
    for part in parts():
        draw_part(ax, part)
    for a, b in LOCAL_EDGES:
        start, end = straight_ends(ch[a], ch[b])
        draw_arrow(ax, [start, end], COLOR_ARROW)
    lane, *drops = feed_routes(ch)
    draw_arrow(ax, lane, COLOR_FEED, width=1.6)
    for route in drops:
        draw_arrow(ax, route, COLOR_FEED, width=1.6, halo=True)
    for chapter in ch.values():
        draw_box(ax, chapter)
    draw_legend(ax)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parent
    parser.add_argument("--out", type=Path, default=here / "images" / "roadmap.svg",
                        help="SVG file to write (default: book/images/roadmap.svg)")
    parser.add_argument("--png", type=Path, default=None, help="also write a PNG preview here")
    args = parser.parse_args()

    fig = draw_roadmap()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, format="svg", metadata={"Date": None})
    if args.png is not None:
        fig.savefig(args.png, dpi=110)
    plt.close(fig)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
