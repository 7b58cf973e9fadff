"""Report figures as matplotlib ``Figure`` objects, drawn from plain arrays (no dataset, no model).

matplotlib's object-oriented API with the Agg canvas is used directly (no ``pyplot``), so figures
render headless, never open windows and need no backend switch. :func:`save_png` writes a PNG.
Each function takes the arrays that ``sie eval`` stores in ``RUN/eval/figures.npz`` (see
``sie.eval.figure_data``), so ``sie report`` needs neither the dataset nor the checkpoint.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "context_length_curves",
    "dataset_preview",
    "error_along_orbits",
    "latent_steering",
    "retrieval_panel",
    "save_png",
    "training_curves",
]

FloatArray = npt.NDArray[np.floating]
ImageArray = npt.NDArray[np.uint8]  # (..., H, W, 3)

_DPI = 110
# metrics.jsonl bookkeeping keys that are not learning curves
_NOT_CURVES = frozenset(
    {"step", "epoch", "steps", "time_s", "lr", "pairs_per_s", "data_wait_frac", "step_time_s", "peak_mem_mb"}
)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI, bbox_inches="tight")  # keeps legends placed outside the axes
    return path


# ---- training curves ------------------------------------------------------------------------------


def _reference_line(ax: Axes, value: float, text: str, colour: str = "0.3", style: str = "--") -> None:
    """A labelled horizontal reference (e.g. a chance level): a line with gid ``reference`` and its text.

    The line's label starts with ``_`` so run legends leave it out; the text sits on the line.
    """
    line = ax.axhline(value, color=colour, ls=style, lw=1.0, zorder=1, label=f"_{text}")
    line.set_gid("reference")
    ax.text(0.01, value, text, transform=ax.get_yaxis_transform(), fontsize=6, color=colour,
            ha="left", va="bottom", gid="reference")  # fmt: skip


def training_curves(
    runs: Mapping[str, Sequence[Mapping[str, object]]],
    max_panels: int = 8,
    references: Mapping[str, Sequence[tuple[str, float]]] | None = None,
) -> Figure:
    """Loss terms against the training step, one panel per key, one line per run.

    ``runs`` maps a run name to its ``metrics.jsonl`` records (dicts with a ``step`` and numbers).
    Every key starting with ``loss`` gets a panel (runs of different methods log different terms,
    and none may be dropped); other numeric keys follow while the total stays within ``max_panels``.
    ``references`` maps a key to ``(text, value)`` pairs drawn as labelled dashed horizontal lines in
    its panel (e.g. the constant-predictor floor of the online rotation R²).
    """
    keys: list[str] = []
    for records in runs.values():
        for rec in records:
            for key, value in rec.items():
                if key in keys or key in _NOT_CURVES:
                    continue
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    keys.append(key)
    keys.sort(key=lambda k: (not k.startswith("loss"), k != "loss", k))
    losses = [k for k in keys if k.startswith("loss")]
    keys = losses + [k for k in keys if not k.startswith("loss")][: max(0, max_panels - len(losses))]
    if not keys:
        fig = _figure(4, 2)
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no numeric records in metrics.jsonl", ha="center", va="center")
        ax.set_axis_off()
        return fig
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = _figure(3.2 * cols, 2.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    # One colour per run across all panels (a run missing from a panel must not shift the others').
    palette = matplotlib.colormaps["tab10" if len(runs) <= 10 else "tab20"]
    colours = {name: palette(i % palette.N) for i, name in enumerate(runs)}
    for ax, key in zip(axes.flat, keys, strict=False):
        for name, records in runs.items():
            pts = [
                (float(rec["step"]), float(rec[key]))  # type: ignore[arg-type]
                for rec in records
                if "step" in rec and isinstance(rec.get(key), (int, float))
            ]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(
                    xs, ys, label=name, lw=1.2, color=colours[name], marker="." if len(pts) < 30 else None
                )
        for text, value in (references or {}).get(key, ()):
            _reference_line(ax, value, text)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_axis_off()
    if len(runs) > 1:
        handles, labels = [], []
        for ax in axes.flat:  # one entry per run, from whichever panel first drew it
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
        if len(runs) <= 4:
            axes.flat[0].legend(handles, labels, fontsize=7)
        else:  # many runs: a legend inside a panel would hide its curves
            fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


# ---- retrieval panels -------------------------------------------------------------------------------


def retrieval_panel(
    sources: ImageArray,
    targets: ImageArray,
    retrieved: ImageArray,
    correct: npt.NDArray[np.bool_],
    captions: Sequence[Sequence[str]],
) -> Figure:
    """Predictor retrieval for Q queries and S transformations.

    ``sources`` (Q, H, W, 3) are the start views; ``targets`` (Q, S, H, W, 3) the ground-truth views
    after each transformation; ``retrieved`` (Q, S, H, W, 3) the gallery images nearest to the
    predictor's output; ``correct`` (Q, S) marks exact retrievals (green frame, else red);
    ``captions`` (Q, S) label each column (e.g. the rotation angle).
    """
    q, s = targets.shape[:2]
    fig = _figure(1.2 * (s + 1), 2.5 * q)
    axes = fig.subplots(2 * q, s + 1, squeeze=False)
    for i in range(q):
        top, bottom = axes[2 * i], axes[2 * i + 1]
        top[0].imshow(sources[i])
        top[0].set_title("query", fontsize=7)
        bottom[0].text(0.5, 0.6, "ground truth ↑\nretrieved ↓", ha="center", va="center", fontsize=7)
        for j in range(s):
            top[j + 1].imshow(targets[i, j])
            top[j + 1].set_title(captions[i][j], fontsize=6)
            bottom[j + 1].imshow(retrieved[i, j])
            colour = "tab:green" if bool(correct[i, j]) else "tab:red"
            for spine in bottom[j + 1].spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(2.5)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for i in range(q):
        for spine in axes[2 * i + 1, 0].spines.values():
            spine.set_visible(False)
    return fig


# ---- latent steering --------------------------------------------------------------------------------


def latent_steering(sweeps: Sequence[Mapping[str, object]]) -> Figure:
    """One panel per sweep: 2-D projections of the encoded embeddings and of the predictor's trajectory.

    Each sweep maps ``encoded`` and ``predicted`` to (S, 2) arrays, ``values`` to (S,) (the swept
    quantity, in display units), ``value_label`` and ``title`` to strings. Both polylines are ordered
    as given; grey segments join each encoded view to the prediction for the same transformation, so a
    good equivariant predictor overlays the two.
    """
    n = max(1, len(sweeps))
    fig = _figure(4.4 * n, 3.9)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, sweep in zip(axes, sweeps, strict=False):
        encoded = np.asarray(sweep["encoded"], dtype=np.float64)
        predicted = np.asarray(sweep["predicted"], dtype=np.float64)
        values = np.asarray(sweep["values"], dtype=np.float64)
        for e, p in zip(encoded, predicted, strict=True):
            ax.plot([e[0], p[0]], [e[1], p[1]], color="0.75", lw=0.8, zorder=1)
        ax.plot(encoded[:, 0], encoded[:, 1], "-", color="tab:blue", lw=1, alpha=0.6, zorder=2)
        sc = ax.scatter(encoded[:, 0], encoded[:, 1], c=values, cmap="viridis", s=28, zorder=3,
                        label="encoded views")  # fmt: skip
        ax.plot(predicted[:, 0], predicted[:, 1], "--", color="tab:orange", lw=1, alpha=0.8, zorder=2)
        ax.scatter(predicted[:, 0], predicted[:, 1], c=values, cmap="viridis", marker="x", s=36, zorder=3,
                   label="predictor from the first view")  # fmt: skip
        ax.scatter(encoded[:1, 0], encoded[:1, 1], facecolors="none", edgecolors="k", s=120, zorder=4,
                   label="first view")  # fmt: skip
        fig.colorbar(sc, ax=ax, label=str(sweep.get("value_label", "")))
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        # Object ids are long (SYNSET/64-hex); wrap so neighbouring panels' titles do not overlap.
        ax.set_title("\n".join(textwrap.wrap(str(sweep.get("title", "")), 40)), fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    return fig


# ---- error along orbits (NERO-style) ----------------------------------------------------------------


def error_along_orbits(
    curves: Mapping[str, tuple[FloatArray, FloatArray]],
    *,
    axis_names: Sequence[str] = ("rotation about x", "rotation about y", "rotation about z"),
    bins: int = 18,
    ylabel: str = "rotation error (degrees)",
    references: Mapping[str, float] | None = None,
) -> Figure:
    """Mean prediction error binned along each transformation angle, one panel per angle.

    ``curves`` maps a label (a run, a representation part) to ``(angles (n, A) radians, errors (n,))``:
    each sample's transformation angles and its error. Shaded bands are ± one standard error.
    ``references`` maps a label (e.g. "constant predictor") to a mean error drawn as a labelled
    horizontal line in every panel.
    """
    num_axes = len(axis_names)
    fig = _figure(3.4 * num_axes, 2.8)
    axes = fig.subplots(1, num_axes, squeeze=False)[0]
    for label, (angles, errors) in curves.items():
        angles = np.asarray(angles, dtype=np.float64)
        errors = np.asarray(errors, dtype=np.float64)
        for k, ax in enumerate(axes):
            lo, hi = float(angles[:, k].min()), float(angles[:, k].max())
            if hi <= lo:
                hi = lo + 1e-6
            edges = np.linspace(lo, hi, bins + 1)
            idx = np.clip(np.digitize(angles[:, k], edges) - 1, 0, bins - 1)
            centres, means, sems = [], [], []
            for b in range(bins):
                sel = errors[idx == b]
                if sel.size:
                    centres.append(np.degrees((edges[b] + edges[b + 1]) / 2))
                    means.append(sel.mean())
                    sems.append(sel.std() / math.sqrt(sel.size))
            c, mu, se = np.array(centres), np.array(means), np.array(sems)
            ax.plot(c, mu, marker=".", lw=1.2, label=label)
            ax.fill_between(c, mu - se, mu + se, alpha=0.2)
    styles = ("--", ":", "-.")
    for k, ax in enumerate(axes):
        for i, (text, value) in enumerate((references or {}).items()):
            _reference_line(ax, value, f"{text}: {value:.0f}°", style=styles[i % len(styles)])
        ax.set_xlabel(f"{axis_names[k]} (degrees)", fontsize=8)
        ax.set_ylabel(ylabel if k == 0 else "", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if len(curves) > 1:
        axes[0].legend(fontsize=7)
    return fig


# ---- dataset preview --------------------------------------------------------------------------------


def dataset_preview(
    images: ImageArray, row_labels: Sequence[str], column_labels: Sequence[str] = ()
) -> Figure:
    """A grid of views (R, C, H, W, 3): one object per row (labelled), its views along the row."""
    r, c = images.shape[:2]
    fig = _figure(1.1 * c + 1.2, 1.1 * r)
    axes = fig.subplots(r, c, squeeze=False)
    for i in range(r):
        for j in range(c):
            ax = axes[i, j]
            ax.imshow(images[i, j])
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(row_labels[i], fontsize=7, rotation=0, ha="right", va="center")
            if i == 0 and j < len(column_labels):
                ax.set_title(column_labels[j], fontsize=7)
    return fig


# ---- in-context evaluation ----------------------------------------------------------------------------


def context_length_curves(
    panels: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]],
    chance: Mapping[str, float] | None = None,
) -> Figure:
    """One panel per metric (e.g. "rotation R²"), one line per environment: the value against the context
    length. ``panels`` maps a metric to {environment: [(length, value), ...]}; the lengths are placed at
    even steps (0, 2, 6, 14, ... grow about geometrically) and labelled. ``chance`` maps a metric to a
    level drawn as a dashed reference line."""
    names = list(panels)
    lengths = sorted({length for series in panels.values() for pts in series.values() for length, _ in pts})
    position = {length: i for i, length in enumerate(lengths)}
    fig = _figure(3.2 * max(1, len(names)), 2.6)
    axes = fig.subplots(1, max(1, len(names)), squeeze=False)[0]
    palette = matplotlib.colormaps["tab10"]
    environments = sorted({env for series in panels.values() for env in series})
    colours = {env: palette(i % palette.N) for i, env in enumerate(environments)}
    for ax, name in zip(axes, names, strict=False):
        for env, pts in panels[name].items():
            ordered = sorted(pts)
            ax.plot([position[x] for x, _ in ordered], [y for _, y in ordered], marker="o",
                    color=colours[env], label=f"{env} context")  # fmt: skip
        if chance and name in chance:
            _reference_line(ax, chance[name], "chance")
        ax.set_xticks(range(len(lengths)), [str(x) for x in lengths])
        ax.set_xlabel("context length (tokens)")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return fig
