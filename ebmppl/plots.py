"""Figures a person would rather look at: densities with draws, traces per chain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from ebmppl.energy import Energy

__all__ = ["plot_density_2d", "plot_samples_2d"]


def _grid(limits: Sequence[float], resolution: int):
    xmin, xmax, ymin, ymax = limits
    xs, ys = np.linspace(xmin, xmax, resolution), np.linspace(ymin, ymax, resolution)
    gx, gy = np.meshgrid(xs, ys)
    return gx, gy, np.stack([gx, gy], axis=-1).reshape(-1, 2)


def plot_density_2d(energy: Energy, ax: Any, limits: Sequence[float] = (-4, 4, -4, 4), resolution: int = 200,
                    cmap: str = "Blues") -> Any:
    """Filled contours of the (grid-normalised) density ``exp(-E/T)`` of a 2-D energy on ``ax``.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from ebmppl.targets import banana
    >>> fig, ax = plt.subplots()
    >>> _ = plot_density_2d(banana().energy, ax)
    >>> plt.close(fig)
    """
    if energy.event_shape != (2,):
        raise ValueError(f"plot_density_2d needs a 2-D energy, got event_shape {energy.event_shape}.")
    gx, gy, pts = _grid(limits, resolution)
    logp = np.asarray(energy.logdensity(jnp.asarray(pts, jnp.float32)), np.float64).reshape(gx.shape)
    density = np.exp(logp - logp.max())
    # levels from 2 % of the mode up: the empty plane stays white
    return ax.contourf(gx, gy, density, levels=np.linspace(0.02, 1.0, 12), cmap=cmap, extend="neither")


def plot_samples_2d(energy: Energy, positions: Any, *, title: str = "", limits: Sequence[float] | None = None,
                    max_points: int = 1200):
    """One figure: density with the draws of every chain over it, and the trace of each coordinate.

    Parameters
    ----------
    energy
        A 2-D :class:`~ebmppl.Energy`.
    positions
        Draws ``(chain, draw, 2)`` as returned by :func:`ebmppl.sample`.
    title
        Figure title.
    limits
        ``(xmin, xmax, ymin, ymax)``; default: the draws' range with a margin.
    max_points
        At most this many draws are scattered (evenly thinned).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import jax
    >>> from ebmppl import sample
    >>> from ebmppl.targets import banana
    >>> t = banana()
    >>> out = sample(t.energy, jax.random.key(0), sampler="mala", num_chains=2, num_warmup=100,
    ...              num_samples=100, progress_bar=False)
    >>> fig = plot_samples_2d(t.energy, out.positions, title="banana")
    >>> len(fig.axes)
    4
    """
    import matplotlib.pyplot as plt

    x = np.asarray(positions)
    if x.ndim != 3 or x.shape[-1] != 2:
        raise ValueError(f"positions must be (chain, draw, 2), got shape {x.shape}.")
    if limits is None:
        lo, hi = np.percentile(x.reshape(-1, 2), [0.5, 99.5], axis=0)
        pad = 0.15 * (hi - lo) + 0.5
        limits = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    fig = plt.figure(figsize=(11, 4.5), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 1.4])
    ax = fig.add_subplot(grid[:, 0])
    cs = plot_density_2d(energy, ax, limits)
    fig.colorbar(cs, ax=ax, label="density (max = 1)", shrink=0.8)
    n_chains, n_draws = x.shape[:2]
    stride = max(1, (n_chains * n_draws) // max_points)
    colours = plt.get_cmap("tab10")
    for c in range(n_chains):
        pts = x[c, ::stride]
        ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.45, color=colours(c % 10), label=f"chain {c}" if c < 10 else None)
    ax.set(xlim=limits[:2], ylim=limits[2:], xlabel="$x_1$", ylabel="$x_2$", title="density and draws")
    if n_chains <= 10:
        ax.legend(loc="upper right", fontsize=7, markerscale=2)
    for i in range(2):
        axt = fig.add_subplot(grid[i, 1])
        for c in range(n_chains):
            axt.plot(x[c, :, i], lw=0.6, alpha=0.8, color=colours(c % 10))
        axt.set(ylabel=f"$x_{i + 1}$", xlabel="draw" if i == 1 else None, title="trace per chain" if i == 0 else None)
    if title:
        fig.suptitle(title)
    return fig
