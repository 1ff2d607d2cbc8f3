"""The sampler-comparison figure: one page a newcomer can read."""

from __future__ import annotations

from typing import Any

import numpy as np

from ebmppl import _arviz as azb

__all__ = ["plot_comparison"]

_OK, _BAD = "tab:blue", "tab:red"


def _bars(ax, labels, values, converged, title, ylabel, log=False):
    colours = [_OK if ok else _BAD for ok in converged]
    bars = ax.bar(labels, np.nan_to_num(values, nan=0.0), color=colours, alpha=0.85)
    for bar, ok in zip(bars, converged, strict=True):
        if not ok:
            bar.set_hatch("//")
    ax.set(title=title, ylabel=ylabel)
    if log:
        ax.set_yscale("log")
    ax.tick_params(axis="x", rotation=30)


def plot_comparison(comparison: Any, *, max_lag: int = 60, max_points: int = 600):
    """One figure comparing samplers: ESS, efficiency, R-hat, the chains, autocorrelation, errors, time.

    Non-converged runs are drawn in red with hatching and named in the title. The accuracy panel shows
    the worst moment errors in Monte-Carlo standard errors against the bound ``comparison.max_mcse`` (and the
    worst mode-weight error where the modes were known); where no truth was known, it and the title say that
    bias was not checked. A run whose chains sit in disjoint regions is marked ``STUCK`` above its chains.

    Parameters
    ----------
    comparison
        A :class:`~ebmppl.compare.Comparison` (what :func:`ebmppl.compare` returns).
    max_lag
        Lags shown in the autocorrelation panel.
    max_points
        Draws per chain scattered in the 2-D panels.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import jax, matplotlib; matplotlib.use("Agg")
    >>> from ebmppl import compare
    >>> from ebmppl.targets import banana
    >>> c = compare(banana(), jax.random.key(0), ["mala", "nuts"], num_warmup=100, num_samples=100,
    ...             progress_bar=False)
    >>> fig = plot_comparison(c)
    >>> fig.axes[0].get_title()
    'ESS (min over dimensions)'
    """
    import matplotlib.pyplot as plt

    from ebmppl.plots import plot_density_2d

    table = comparison.table
    labels = list(table["sampler"])
    converged = [bool(v) for v in table["converged"]]
    n = len(labels)
    two_d = comparison.energy.event_shape == (2,)
    fig = plt.figure(figsize=(max(14, 3.2 * n), 12), layout="constrained")
    grid = fig.add_gridspec(3, 1)
    top_grid = grid[0].subgridspec(1, 3)
    top = [fig.add_subplot(top_grid[0, i]) for i in range(3)]
    chain_grid = grid[1].subgridspec(1, max(n, 3))

    x = np.arange(n)
    top[0].bar(x - 0.2, np.nan_to_num(table["ess_bulk_min"].to_numpy(float)), 0.4, label="bulk",
               color=[_OK if c else _BAD for c in converged])
    top[0].bar(x + 0.2, np.nan_to_num(table["ess_tail_min"].to_numpy(float)), 0.4, label="tail",
               color=[_OK if c else _BAD for c in converged], alpha=0.5)
    top[0].set_xticks(x, labels, rotation=30)
    top[0].set(title="ESS (min over dimensions)", ylabel="effective draws")
    top[0].legend(title="dark: bulk, light: tail", fontsize=8)
    _bars(top[1], labels, table["ess_per_1k_grads"].to_numpy(float), converged,
          "efficiency: bulk ESS per 1000 gradients", "ESS / 1000 ∇E", log=True)
    _bars(top[2], labels, table["rhat_max"].to_numpy(float), converged, "split R-hat (max over dimensions)", "R-hat")
    top[2].axhline(1.01, color="k", ls="--", lw=1)
    top[2].text(0.01, 1.01, " 1.01", transform=top[2].get_yaxis_transform(), va="bottom", fontsize=8)
    finite = table["rhat_max"].to_numpy(float)
    finite = finite[np.isfinite(finite)]
    if finite.size:
        top[2].set_ylim(min(0.995, finite.min() - 0.005), max(1.03, finite.max() + 0.01))

    # row 2: what the chains did
    limits = None
    if two_d:
        pts = [np.asarray(s.positions).reshape(-1, 2) for s in comparison.samples.values() if s is not None]
        if pts:
            allp = np.concatenate(pts)
            lo, hi = np.percentile(allp, [0.5, 99.5], axis=0)
            pad = 0.15 * (hi - lo) + 0.3
            limits = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    colours = plt.get_cmap("tab10")
    for i, label in enumerate(labels):
        ax = fig.add_subplot(chain_grid[0, i])
        out = comparison.samples.get(label)
        status = "" if converged[i] else "  NOT CONVERGED"
        if "stuck_chains" in table and bool(table["stuck_chains"].iloc[i]):
            status += " (STUCK)"
        if "mode_weights" in table and table["mode_weights"].iloc[i]:
            status += f"\nmode weights {table['mode_weights'].iloc[i]}"
        ax.set_title(f"{label}{status}", color="k" if converged[i] else _BAD, fontsize=10)
        if out is None:
            ax.text(0.5, 0.5, "diverged", ha="center", va="center", color=_BAD, transform=ax.transAxes)
            ax.set_axis_off()
            continue
        draws = np.asarray(out.positions)
        if two_d and limits is not None:
            plot_density_2d(comparison.energy, ax, limits, resolution=120, cmap="Greys")
            stride = max(1, draws.shape[1] // max_points)
            for c in range(draws.shape[0]):
                ax.plot(draws[c, ::stride, 0], draws[c, ::stride, 1], lw=0.4, alpha=0.7, color=colours(c % 10))
            ax.set(xlim=limits[:2], ylim=limits[2:])
        else:
            flat = draws.reshape(draws.shape[:2] + (-1,))
            for c in range(flat.shape[0]):
                ax.plot(flat[c, :, 0], lw=0.4, alpha=0.8, color=colours(c % 10))
            ax.set(xlabel="draw", ylabel="$x_1$")
        if not converged[i]:
            for spine in ax.spines.values():
                spine.set(color=_BAD, linewidth=2)

    # row 3: autocorrelation, accuracy, time
    bottom_grid = grid[2].subgridspec(1, 3)
    bottom = [fig.add_subplot(bottom_grid[0, i]) for i in range(3)]
    for i, label in enumerate(labels):
        out = comparison.samples.get(label)
        if out is None:
            continue
        flat = np.asarray(out.positions, np.float64).reshape(out.positions.shape[:2] + (-1,))
        acf = np.mean([azb.autocorr(flat[c, :, 0])[: max_lag + 1] for c in range(flat.shape[0])], axis=0)
        bottom[0].plot(acf, label=label, color=colours(i % 10), ls="-" if converged[i] else "--")
    bottom[0].axhline(0, color="k", lw=0.5)
    bottom[0].set(title="autocorrelation of $x_1$ (mean over chains)", xlabel="lag (draws)", ylabel="ACF")
    bottom[0].legend(fontsize=8)
    limit = float(getattr(comparison, "max_mcse", float("nan")))
    bias_check = str(getattr(comparison, "bias_check", "not checked"))
    checked = bias_check != "not checked"
    modes = "mode_err_mcse" in table and bool(np.isfinite(table["mode_err_mcse"].to_numpy(float)).any())
    if checked or modes:
        xm = np.arange(n)
        groups = [("mean_err_mcse", "means", "tab:green"), ("std_err_mcse", "std devs", "tab:olive")]
        groups += [("mode_err_mcse", "mode weights", "tab:cyan")] if modes else []
        width = 0.8 / len(groups)
        for j, (column, name, colour) in enumerate(groups):
            bottom[1].bar(xm + (j - (len(groups) - 1) / 2) * width,
                          np.nan_to_num(table[column].to_numpy(float), posinf=1e3), width, label=name, color=colour)
        if np.isfinite(limit):
            bottom[1].axhline(limit, color="k", ls="--", lw=1)
            bottom[1].text(0.01, limit, f" limit {limit:.2f}", transform=bottom[1].get_yaxis_transform(),
                           va="bottom", fontsize=8)
        bottom[1].set_xticks(xm, labels, rotation=30)
        against = ("exact moments" if bias_check.startswith("exact") else "the reference run" if checked
                   else "the true mode weights")
        bottom[1].set(title=f"worst error vs {against}, in MC standard errors", ylabel="|error| / MCSE")
        bottom[1].legend(fontsize=8)
    else:
        bottom[1].text(0.5, 0.5,
                       "bias not checked:\ntrue moments unknown\n(pass true_mean/true_std\nor reference='nuts')",
                       ha="center", va="center", color=_BAD, transform=bottom[1].transAxes)
        bottom[1].set_title("bias not checked")
        bottom[1].set_axis_off()
    xm = np.arange(n)
    bottom[2].bar(xm, np.nan_to_num(table["compile_s"].to_numpy(float)), color="tab:gray", label="compile")
    bottom[2].bar(xm, np.nan_to_num(table["sampling_s"].to_numpy(float)),
                  bottom=np.nan_to_num(table["compile_s"].to_numpy(float)), color="tab:purple", label="sampling")
    bottom[2].set_xticks(xm, labels, rotation=30)
    bottom[2].set(title="time (s)", ylabel="seconds")
    bottom[2].legend(fontsize=8)

    bad = [lab for lab, ok in zip(labels, converged, strict=True) if not ok]
    verdict = "all runs converged" if not bad else f"NOT converged: {', '.join(bad)} (red, hatched)"
    if not checked:
        verdict += " (bias not checked: no truth)"
    fig.suptitle(f"Samplers on {comparison.name}: same chains, budget and keys — {verdict}", fontsize=13,
                 color="k" if not bad else _BAD)
    return fig
