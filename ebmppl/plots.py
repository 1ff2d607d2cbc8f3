"""Figures a person would rather look at: densities with draws, traces per chain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from ebmppl.energy import Energy
from ebmppl.samplers.tempering import TemperingSummary, tempering_summary

__all__ = ["plot_density_2d", "plot_samples_2d", "plot_training_curves", "plot_fit_2d", "plot_image_grid",
           "plot_ladder"]


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


def plot_training_curves(history: dict[str, Any], *, smooth: int = 50):
    """Loss, energies of data and negatives, CD gap and gradient norm against the step.

    ``history`` is :attr:`ebmppl.FitResult.history`. Curves are shown raw
    (faint) and as a running mean over ``smooth`` steps.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> h = {k: np.random.default_rng(0).normal(size=300) for k in ("loss", "energy_pos", "energy_neg", "cd_gap", "grad_norm")}
    >>> len(plot_training_curves(h).axes)
    3
    """
    import matplotlib.pyplot as plt

    def running(v):
        v = np.asarray(v, np.float64)
        k = max(1, min(smooth, len(v)))
        return np.convolve(v, np.ones(k) / k, mode="valid"), np.arange(k - 1, len(v))

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
    panels = [
        ("loss", ["loss"], "loss"),
        ("energies", ["energy_pos", "energy_neg"], "mean energy"),
        ("gradient norm", ["grad_norm"], "‖∇θ loss‖"),
    ]
    labels = {"energy_pos": "data E(x⁺)", "energy_neg": "negatives E(x⁻)", "loss": "loss", "grad_norm": "grad norm"}
    for ax, (title, keys, ylabel) in zip(axes, panels, strict=True):
        for key in keys:
            if key not in history:
                continue
            v = np.asarray(history[key], np.float64)
            line = ax.plot(v, lw=0.5, alpha=0.3)[0]
            mean, steps = running(v)
            ax.plot(steps, mean, color=line.get_color(), lw=1.6, label=labels.get(key, key))
        ax.set(title=title, xlabel="step", ylabel=ylabel)
        if len(keys) > 1:
            ax.legend()
    return fig


def plot_fit_2d(energy: Energy, data: Any, samples: Any, limits: Sequence[float], *, title: str = ""):
    """Learned density beside the data, with model samples: three panels.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> from ebmppl.targets import banana
    >>> x = np.random.default_rng(0).normal(size=(100, 2))
    >>> len(plot_fit_2d(banana().energy, x, x, (-3, 3, -3, 3)).axes)
    3
    """
    import matplotlib.pyplot as plt

    data, samples = np.asarray(data), np.asarray(samples)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.3), sharex=True, sharey=True, layout="constrained")
    hist_kw = dict(bins=120, range=[limits[:2], limits[2:]], cmap="Blues")
    axes[0].hist2d(data[:, 0], data[:, 1], **hist_kw)
    axes[0].set_title(f"data ({len(data)} points)")
    plot_density_2d(energy, axes[1], limits, resolution=250)
    axes[1].set_title("learned density exp(-E)")
    axes[2].scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.5, color="tab:blue")
    axes[2].set_title(f"model samples ({len(samples)} points)")
    for ax in axes:
        ax.set(xlim=limits[:2], ylim=limits[2:], aspect="equal")
    if title:
        fig.suptitle(title)
    return fig


def plot_image_grid(images: Any, *, ncols: int = 8, title: str = ""):
    """A grid of grey images ``(n, 1, h, w)`` (or ``(n, h, w)``) with values in [-1, 1].

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> fig = plot_image_grid(np.zeros((16, 1, 8, 8)))
    >>> len(fig.axes)
    16
    """
    import matplotlib.pyplot as plt

    x = np.asarray(images)
    if x.ndim == 4:
        x = x[:, 0]
    n = len(x)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.2 * ncols, 1.2 * nrows + (0.4 if title else 0)),
                             layout="constrained", squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            ax.imshow(x[i], cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
    for ax in axes.ravel()[n:]:
        ax.remove()
    if title:
        fig.suptitle(title)
    return fig


def plot_ladder(summary_or_samples: TemperingSummary | Any, ax: Any = None):
    """Parallel tempering's adapted ladder and communication barrier: three panels.

    Left: the ladder, ``β_i`` against the level ``i``. Middle: the local
    communication barrier ``λ(β) ≈ r_i / (β_{i+1} − β_i)`` of each pair (``r_i``
    its swap rejection rate) as a step function, and the cumulative barrier
    ``Λ(β)``, piecewise linear through ``(β_i, Σ_{j<i} r_j)``, on the right
    axis. Right: the swap acceptance of each pair, with the level every pair
    sits at when the ladder is equalised, ``1 − Λ / (R − 1)``. The title gives
    ``Λ`` and the round-trip rate against the ideal ``1 / (2 + 2Λ)`` of
    non-reversible swaps (Syed et al. 2022). An adapted ladder crowds its
    levels where ``λ`` is large, so every pair rejects about equally often.

    Parameters
    ----------
    summary_or_samples
        A :class:`~ebmppl.samplers.TemperingSummary`, or the
        :class:`~ebmppl.Samples` of a parallel-tempering :func:`ebmppl.sample`
        run (summarised by :func:`~ebmppl.samplers.tempering_summary`).
    ax
        Three matplotlib axes to draw on (ladder, barrier, acceptance);
        ``None``: a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure of ``ax`` (or the new one).

    Examples
    --------
    >>> import jax, matplotlib
    >>> matplotlib.use("Agg")
    >>> from ebmppl import sample, samplers
    >>> from ebmppl.targets import gaussian_mixture
    >>> t = gaussian_mixture([0.3, 0.7], [[-3.0, 0.0], [3.0, 0.0]], [0.25 * np.eye(2)] * 2)
    >>> out = sample(t.energy, jax.random.key(0), sampler=samplers.parallel_tempering(num_replicas=5),
    ...              num_chains=2, num_warmup=300, num_samples=300, progress_bar=False)
    >>> fig = plot_ladder(out)
    >>> len(fig.axes)   # ladder, barrier (with its cumulative twin axis), swap acceptance
    4
    """
    import matplotlib.pyplot as plt

    s = summary_or_samples if isinstance(summary_or_samples, TemperingSummary) else tempering_summary(
        summary_or_samples)
    betas = np.asarray(s.betas, np.float64)
    rejection = 1.0 - np.asarray(s.swap_acceptance, np.float64)
    if ax is None:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), layout="constrained")
    else:
        axes = list(np.ravel(ax))
        if len(axes) != 3:
            raise ValueError(f"ax must be three matplotlib axes (ladder, barrier, acceptance) or None, "
                             f"got {len(axes)}.")
        fig = axes[0].figure
    levels = np.arange(len(betas))
    axes[0].plot(levels, betas, "o-", color="tab:blue", ms=4)
    axes[0].set(xlabel="level $i$ (0 = reference)", ylabel=r"$\beta_i$", title="adapted ladder")
    # local barrier: a step per pair, height r_i / Δβ_i; cumulative: linear through (β_i, Σ_{j<i} r_j)
    local = rejection / np.maximum(np.diff(betas), 1e-12)
    axes[1].stairs(local, betas, color="tab:orange", lw=1.6, label=r"local $\lambda(\beta)$")
    axes[1].set(xlabel=r"$\beta$", ylabel=r"$\lambda(\beta)$", title="communication barrier", xlim=(0, 1))
    twin = axes[1].twinx()
    twin.plot(betas, np.concatenate([[0.0], np.cumsum(rejection)]), "o-", color="tab:purple", ms=3,
              label=r"cumulative $\Lambda(\beta)$")
    twin.set_ylabel(r"$\Lambda(\beta)$")
    handles = axes[1].get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    axes[1].legend(handles, [h.get_label() for h in handles], loc="upper center", fontsize=8)
    axes[2].bar(levels[:-1] + 0.5, s.swap_acceptance, width=0.8, color="tab:green", alpha=0.8)
    if len(betas) > 1:
        axes[2].axhline(1.0 - s.barrier / (len(betas) - 1), color="k", ls="--", lw=1,
                        label=r"equalised: $1 - \Lambda/(R-1)$")
        axes[2].legend(loc="upper right", fontsize=8)
    axes[2].set(xlabel="pair $(i, i+1)$ at $i + 1/2$", ylabel="swap acceptance", ylim=(0, 1.2),
                title="swap acceptance per pair")
    fig.suptitle(f"parallel tempering, R = {len(betas)}: barrier Λ = {s.barrier:.2f}; round trips "
                 f"{1000 * s.round_trip_rate:.1f} per 1000 swap rounds per chain "
                 f"(ideal 1/(2+2Λ): {1000 * s.ideal_round_trip_rate:.1f})")
    return fig
