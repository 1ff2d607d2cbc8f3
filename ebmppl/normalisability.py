"""Is ``exp(-E(x)/T)`` normalisable? A cheap probe, run before any log Z is estimated.

``log Z = log ∫ exp(-E(x)/T) dx`` is finite only if the density's mass dies
off far from where it lives. A learned energy need not do that: a JEM
classifier's marginal ``-logsumexp f(x)`` falls without bound along the
directions in which a logit grows, and a negated composition ``E_1 - w E_2``
falls like ``-|x|²`` when ``w`` is large. Every estimator still returns *a
number* — AIS and importance sampling the mass they happened to visit, a grid
the mass inside its box — often with an error bar that looks fine.

:func:`assert_normalisable` looks for such tails before an estimate is made.
In the coordinates ``y = (x - c) / s`` of the energy's typical region
(:meth:`ebmppl.Energy.typical_region`) it takes spheres of radius
``r = 4^k / 4`` (from ``r = 1/4`` to ``r = 2^20 ≈ 10⁶``) and on each looks
for the largest log-density ``M(r) = max_{|u|=1} -E(c + s·r·u)/T``: first
along random rays, then by projected gradient ascent on the sphere from the
best rays (a JEM marginal may fall along ONE narrow cone of directions that
random rays in high dimension all miss; the ascent follows the gradient into
it). The mass of the shell between ``r`` and ``4r`` is at most

    ``exp(M(r') + d·log r + const)``   (surface ``∝ r^{d-1}``, width ``∝ r``; ``r'`` its worst radius),

so if ``M(r) + d·log r`` falls over the outermost radii the tail's mass
vanishes and the energy passes; if it stays flat or grows (a flat energy, an
energy that falls linearly or quadratically along some direction, a tail as
heavy as ``|y|^{-d}``) there is no finite ``log Z`` to estimate, and
:class:`NotNormalisableError` says what was seen and what fixes it. An
energy that is ``+inf`` outside a bounded set (bounded support) passes.

What it cannot see: mass beyond ``2^20`` typical-region scales (declare a
``typical_region`` that covers it), and a direction of decrease that neither
a random ray nor the gradient leads to. A pass is a necessary condition for
the estimators, not a proof.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ebmppl.energy import Energy

__all__ = ["NotNormalisableError", "NormalisabilityReport", "assert_normalisable"]

MIN_LOG2_RADIUS = -2
MAX_LOG2_RADIUS = 20
"""The probe's spheres have radii ``2^k``, ``k = MIN_LOG2_RADIUS, MIN_LOG2_RADIUS + 2, ..., MAX_LOG2_RADIUS``, in
typical-region scales."""
TAIL_OCTAVES = 4
"""The verdict compares the outermost sphere with the one ``TAIL_OCTAVES`` doublings of the radius further in."""
TAIL_DROP = 1.0
"""Nats by which the outermost shell's log-mass bound must lie below the one ``TAIL_OCTAVES`` doublings in, and
below the largest of all shells: a tail whose density falls slower than about ``|y|^{-d-0.4}`` is not taken as
normalisable."""

PLANE_RAYS = 360
"""In two dimensions the probe takes this many equally spaced directions (and no gradient ascent)."""

FIXES = ("add a confinement or base term that grows faster than the energy falls: a Gaussian term "
         "0.5·|x - c|²/σ² (ebmppl.nn.MLPEnergy(..., confinement_scale=σ), or ebmppl.recipes.confined(energy)), "
         "or make the energy +inf outside a bounded support; fit it with fit(..., recipe='density'), which adds the "
         "confinement itself; for a composition, lower the weight of the negated part")


class NotNormalisableError(ValueError):
    """``exp(-E/T)`` has no finite integral, or its mass does not visibly die off: no log Z is returned.

    Raised by :func:`assert_normalisable`, and so by :func:`ebmppl.log_partition` (every method) and
    :func:`ebmppl.logz.grid.grid_log_partition`. The message names the direction and radii at which the
    energy was seen to fall (or stay flat), and the fixes. A subclass of ``ValueError``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ebmppl import Energy
    >>> cone = Energy(lambda p, x: -jnp.sqrt(1.0 + jnp.sum(x**2)), None, event_shape=(2,))   # E falls like -|x|
    >>> try:
    ...     assert_normalisable(cone)
    ... except ValueError as err:                     # NotNormalisableError is a ValueError
    ...     print(str(err)[:90])
    energy is not normalisable: E = -1e+04 at radius 1e+04, below its value -1.414 at radius 1
    """

    def __init__(self, message: str, report: NormalisabilityReport | None = None):
        super().__init__(message)
        self.report = report
        """What the probe saw (a :class:`NormalisabilityReport`; ``None`` when the grid's outer check raised)."""


class NormalisabilityReport(NamedTuple):
    """What :func:`assert_normalisable` saw.

    Attributes
    ----------
    normalisable
        The verdict: the bound on the shells' log-mass falls over the outermost radii.
    radii
        Radii probed, in typical-region scales ``(num_radii,)``.
    max_log_density
        ``max -E/T`` found on each sphere ``(num_radii,)`` (``-inf`` where the energy is ``+inf`` or NaN everywhere
        probed).
    log_shell_mass
        ``max_log_density + d·log r``: the log-mass bound of the shell at each radius, up to a constant.
    direction
        The unit direction ``(*event_shape)`` of the largest log-density on the outermost sphere, in
        typical-region coordinates (``x = center + radius · scale · direction``).
    center, scale
        The typical region the radii are measured from.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> report = assert_normalisable(gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).energy)
    >>> report.normalisable, float(report.radii[0]), float(report.radii[-1])
    (True, 0.25, 1048576.0)
    """

    normalisable: bool
    radii: np.ndarray
    max_log_density: np.ndarray
    log_shell_mass: np.ndarray
    direction: np.ndarray
    center: np.ndarray
    scale: np.ndarray


def _unit(v):
    return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-30)


def _probe(energy, rays, center, scale, log2_radii, num_starts, num_steps):
    """Per radius: the largest log-density found on the sphere, and where. One compiled program.

    Each sphere holds ``num_starts`` slots. For the first ``num_rays / num_starts`` rounds slot ``m`` is offered
    the random rays ``m, m + num_starts, ...`` and keeps the best; then ``num_steps`` rounds of projected gradient
    ascent move it. Every round is ONE batched value-and-gradient of the energy over all spheres and slots, so the
    energy and its gradient are compiled once (compiling them dominates the cost of the probe).
    """
    num_rays = rays.shape[0]
    num_offers = num_rays // num_starts

    log_p = _whitened_log_p(energy, center, scale)

    def on_sphere(r, u):  # value at r·u and the unit tangential ascent direction there
        v, g = jax.value_and_grad(log_p)(r * u)
        g = jnp.where(jnp.isfinite(g), g, 0.0)
        return v, _unit(g - jnp.dot(g, u) * u)

    if num_steps == 0:  # rays only (dimension <= 2: they are a dense grid of directions)
        values = jax.vmap(lambda r: jax.vmap(lambda u: log_p(r * u))(rays))(jnp.exp2(log2_radii))  # (K, N)
        best = jnp.argmax(jnp.where(jnp.isnan(values), -jnp.inf, values), axis=1)
        return values[jnp.arange(values.shape[0]), best], rays[best]

    r_all = jnp.repeat(jnp.exp2(log2_radii), num_starts)  # (K·M,)
    offers = rays[: num_offers * num_starts].reshape(num_offers, num_starts, -1)

    def step(carry, i):
        u, v, g, angle = carry
        offered = jnp.tile(offers[jnp.minimum(i, num_offers - 1)], (log2_radii.shape[0], 1))
        ascending = i >= num_offers
        moved = _unit(jnp.cos(angle)[:, None] * u + jnp.sin(angle)[:, None] * g)
        u_new = jnp.where(ascending, moved, offered)
        v_new, g_new = jax.vmap(on_sphere)(r_all, u_new)
        better = v_new > v
        angle = jnp.where(ascending, jnp.where(better, jnp.minimum(1.5 * angle, 1.0), 0.5 * angle), angle)
        return (jnp.where(better[:, None], u_new, u), jnp.where(better, v_new, v),
                jnp.where(better[:, None], g_new, g), angle), None

    d = rays.shape[1]
    u0 = jnp.tile(offers[0], (log2_radii.shape[0], 1))
    v0 = jnp.full(r_all.shape, -jnp.inf, u0.dtype)
    carry = (u0, v0, jnp.zeros_like(u0), jnp.full(r_all.shape, 0.3, u0.dtype))
    (u, v, _, _), _ = jax.lax.scan(step, carry, jnp.arange(num_offers + num_steps))
    v = v.reshape(-1, num_starts)
    u = u.reshape(-1, num_starts, d)
    i = jnp.argmax(v, axis=1)
    return v[jnp.arange(v.shape[0]), i], u[jnp.arange(v.shape[0]), i]


_probe_jit = eqx.filter_jit(_probe)


def _whitened_log_p(energy: Energy, center, scale):
    """``y ↦ -E(center + scale·y)/T`` on whitened, flat ``y``; NaN (undefined) counts as no mass (``-inf``)."""
    def log_p(y):
        v = energy.logdensity_fn((center + scale * y).reshape(energy.event_shape))
        return jnp.where(jnp.isnan(v), -jnp.inf, v)

    return log_p


def _axes(energy, center, scale, log2_radii):
    """``max -E/T`` over the ``2d`` coordinate half-axes at each radius, and where: an energy that ignores one
    coordinate (or falls along it) is flat or rising exactly there, a set of directions of measure zero that
    random rays and the ascent miss (x²y² passed the rays and the ascent with a finite "log Z")."""
    d = center.shape[0]
    axes = jnp.concatenate([jnp.eye(d, dtype=center.dtype), -jnp.eye(d, dtype=center.dtype)])
    log_p = _whitened_log_p(energy, center, scale)

    values = jax.vmap(lambda r: jax.lax.map(lambda u: log_p(r * u), axes, batch_size=256))(jnp.exp2(log2_radii))
    best = jnp.argmax(values, axis=1)
    return values[jnp.arange(values.shape[0]), best], axes[best]


_axes_jit = eqx.filter_jit(_axes)
_energies_jit = eqx.filter_jit(lambda energy, x: jax.vmap(lambda xi: energy.energy_fn(energy.params, xi))(x))


def assert_normalisable(
    energy: Energy,
    key: jax.Array | None = None,
    *,
    num_rays: int = 64,
    num_starts: int = 8,
    num_steps: int = 16,
    what: str = "energy",
) -> NormalisabilityReport:
    """Probe ``exp(-E/T)`` far from its typical region; :class:`NotNormalisableError` if its mass does not die off.

    On spheres of radius ``r = 2^k`` typical-region scales (``k = -2, 0, 2,
    ..., 20``) around :meth:`~ebmppl.Energy.typical_region`'s centre, the
    largest log-density is searched along ``num_rays`` random rays and then by
    ``num_steps`` steps of projected gradient ascent on the sphere from
    ``num_starts`` of the best rays (in 1-D: both directions; in 2-D: a fan of
    ``PLANE_RAYS`` directions, no ascent), and along the ``2d`` coordinate
    half-axes (an energy that ignores a coordinate is flat exactly there). The shell-mass bound
    ``max(-E/T) + d·log r`` must fall by more than ``TAIL_DROP`` (1) nat over
    the outermost ``TAIL_OCTAVES`` (4) doublings of ``r``, and lie that far
    below its largest value; see the module documentation. :func:`ebmppl.log_partition` and
    :func:`ebmppl.logz.grid.grid_log_partition` call it first (pass
    ``check_normalisable=False`` to skip it). One compiled program, reused for
    energies with the same ``energy_fn`` and shapes.

    Parameters
    ----------
    energy
        The :class:`~ebmppl.Energy`.
    key
        PRNG key of the random rays (default ``jax.random.key(0)``: the same verdict on every run).
    num_rays
        Random directions per sphere.
    num_starts
        Directions refined by projected gradient ascent on each sphere.
    num_steps
        Ascent steps per start.
    what
        How the energy is named in the message.

    Returns
    -------
    NormalisabilityReport
        What was seen (only when the energy passes).

    Raises
    ------
    NotNormalisableError
        The shells' log-mass does not fall far from the typical region: the message names the energy's values
        along the worst direction found and the fixes.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ebmppl import Energy
    >>> from ebmppl.compose import negation
    >>> from ebmppl.targets import gaussian
    >>> a = gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).energy
    >>> b = gaussian([1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).energy
    >>> assert_normalisable(negation(a, b, 0.5)).normalisable      # E = (1 - 0.5) · quadratic + linear
    True
    >>> assert_normalisable(negation(a, b, 3.0))                    # E falls like -|x|²
    Traceback (most recent call last):
    ...
    ebmppl.normalisability.NotNormalisableError: energy is not normalisable: E = ...
    """
    from ebmppl._validation import check_energy, check_int, check_key

    check_energy(energy)
    for name, value in (("num_rays", num_rays), ("num_starts", num_starts), ("num_steps", num_steps)):
        check_int(name, value, 1)
    key = jax.random.key(0) if key is None else check_key(key)
    ftype = jnp.result_type(float)
    center, scale = (jnp.asarray(v, ftype).reshape(-1) for v in energy.typical_region())
    log2_radii = jnp.arange(MIN_LOG2_RADIUS, MAX_LOG2_RADIUS + 1, 2, dtype=ftype)
    # the rays come from NumPy, seeded by the key: jax.random.normal would cost more to compile than the probe
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).reshape(-1).tolist())
    if energy.dim == 1:  # both directions are all there is
        rays, num_steps = np.array([[-1.0], [1.0]]), 0
    elif energy.dim == 2:  # a dense fan of directions, 1° apart: no ascent needed (nor compiled)
        angles = (rng.uniform() + np.arange(PLANE_RAYS)) * (2 * np.pi / PLANE_RAYS)
        rays, num_steps = np.stack([np.cos(angles), np.sin(angles)], 1), 0
    else:
        rays = rng.standard_normal((int(num_rays), energy.dim))
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    rays = jnp.asarray(rays, ftype)
    try:
        max_v, best_u = _probe_jit(energy, rays, center, scale, log2_radii, min(int(num_starts), int(num_rays)),
                                   int(num_steps))
    except Exception:  # an energy JAX cannot differentiate: rays only (if it cannot even run, this raises again)
        if num_steps == 0:
            raise
        max_v, best_u = _probe_jit(energy, rays, center, scale, log2_radii, 1, 0)
    axis_v, axis_u = _axes_jit(energy, center, scale, log2_radii)
    on_axis = axis_v > max_v
    max_v = np.asarray(jnp.where(on_axis, axis_v, max_v), np.float64)
    best_u = jnp.where(on_axis[:, None], axis_u, best_u.reshape(axis_u.shape))
    directions = np.asarray(best_u, np.float64).reshape(-1, *energy.event_shape)
    radii = np.exp2(np.asarray(log2_radii, np.float64))
    shell = max_v + energy.dim * np.log(radii)
    report = NormalisabilityReport(False, radii, max_v, shell, directions[-1],
                                   np.asarray(center).reshape(energy.event_shape),
                                   np.asarray(scale).reshape(energy.event_shape))
    if np.any(max_v == np.inf):  # E = -inf somewhere: nothing to integrate
        k = int(np.argmax(max_v == np.inf))
        raise NotNormalisableError(_message(energy, what, report, k, directions[k]),
                                   report._replace(direction=directions[k]))
    last, inner = shell[-1], shell[-1 - TAIL_OCTAVES // 2]
    peak = shell[np.isfinite(shell)].max(initial=-np.inf)
    if last == -np.inf or (last < inner - TAIL_DROP and last < peak - TAIL_DROP):
        return report._replace(normalisable=True)
    raise NotNormalisableError(_message(energy, what, report, len(radii) - 1, directions[-1]), report)


def _fmt(v: float) -> str:
    return f"{v + 0.0:.4g}"  # + 0.0: no "-0"


def _direction_text(u: np.ndarray) -> str:
    flat = u.reshape(-1)
    if flat.size <= 6:
        return "[" + ", ".join(f"{v + 0.0:.3g}" for v in flat) + "]"
    top = np.argsort(-np.abs(flat))[:4]
    index = [tuple(int(i) for i in np.unravel_index(j, u.shape)) for j in top]
    names = [f"u[{i[0]}]" if len(i) == 1 else f"u[{', '.join(map(str, i))}]" for i in index]
    return "(largest entries " + ", ".join(f"{n} = {flat[j]:.3g}" for n, j in zip(names, top, strict=True)) + ")"


def _message(energy: Energy, what: str, report: NormalisabilityReport, k: int, u: np.ndarray) -> str:
    """Name the worst direction found, the energy along it, the shell-mass trend and the fixes."""
    r_k = report.radii[k]
    show = np.array([r for r in (1.0, 1e1, 1e2, 1e3, 1e4) if r < r_k] + [r_k])
    points = report.center[None] + show.reshape(-1, *([1] * u.ndim)) * report.scale[None] * u[None]
    values = np.asarray(_energies_jit(energy, jnp.asarray(points, jnp.result_type(float))), np.float64)
    head = min(len(show) - 1, int(np.searchsorted(show, 1e4)))  # E at radius 1e4 where probed that far
    seen = f"E = {_fmt(values[head])} at radius {show[head]:.3g}"
    if values[head] < values[0]:
        seen += f", below its value {_fmt(values[0])} at radius 1,"
    seen += (f" along direction u = {_direction_text(u)} (E = {', '.join(_fmt(v) for v in values)} at "
             f"r = {', '.join(f'{r:.3g}' for r in show)}; x = center + r·scale·u, with (center, scale) its "
             f"typical region)")
    shell = report.log_shell_mass
    if report.max_log_density[k] == np.inf:
        why = f"E = -inf at radius {r_k:.3g}"
    else:
        j = len(shell) - 1 - TAIL_OCTAVES // 2
        per = (shell[-1] - shell[j]) / TAIL_OCTAVES
        why = (f"the mass of the shell at radius r, at most exp(max(-E/T) + d·log r) up to a constant "
               f"(d = {energy.dim}), "
               f"does not die off: log of that bound {_fmt(shell[j])} at r = {report.radii[j]:.3g}, "
               f"{_fmt(shell[-1])} at r = {report.radii[-1]:.3g} ({'+' if per >= 0 else ''}{_fmt(per)} per doubling "
               "of r)")
    clamp = getattr(getattr(energy, "sampler_settings", None), "clamp", None)
    trained_on = (f" (this energy was trained with its chains clamped to {tuple(float(v) for v in clamp)}: that box)"
                  if clamp is not None else "")
    return (f"{what} is not normalisable: {seen}; {why}. exp(-E/T) then has no finite integral (or none that its "
            f"values within {report.radii[-1]:.3g} typical-region scales can show), so there is no log Z to "
            f"estimate and any number returned would be meaningless. Fixes: {FIXES}. Only a box matters (images on "
            f"their pixel range{trained_on})? Integrate over it: log_partition(energy, key, base='uniform', "
            "base_center=(low + high) / 2, base_scale=(high - low) / 2) estimates log ∫_box exp(-E/T); or make E "
            "+inf outside it. If the mass truly lies farther out, declare where (a typical_region() method on "
            "energy_fn); to skip this check, pass check_normalisable=False.")
