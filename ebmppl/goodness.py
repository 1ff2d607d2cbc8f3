"""Goodness of fit without log Z: kernel Stein discrepancy (with a test), a classifier two-sample test, and a
feature-space distance for the 8x8 digits.

Three questions, three tools:

* **Do these samples come from this energy?** :func:`ksd_test` (kernel Stein discrepancy, Liu, Lee & Jordan 2016;
  Chwialkowski, Strathmann & Gretton 2016) needs only the score ``∇ₓ log p = -∇E/T`` at the samples, never ``Z``.
  Use it on a sampler's output (is the sampler right for the energy?) or on data (does the energy fit the data?).
* **Do two sets of samples come from one distribution?** :func:`classifier_two_sample_test` (Lopez-Paz & Oquab 2017):
  a small classifier is trained to tell them apart; held-out accuracy above 1/2 is evidence that they differ.
* **How far are generated digits from real ones?** :func:`digits_feature_distance`: the Fréchet distance between
  Gaussians fitted to the penultimate-layer features of a small classifier trained, in the library, on the digits
  of :func:`ebmppl.data.load_digits` (the "FID" of the 8x8 digits).

A test that does not reject is not evidence of a good fit: each test has blind spots, which the docstrings and the
guide (``docs/guide/goodness_of_fit.md``) name.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from blackjax.diagnostics import ess_bulk
from jax import lax

from ebmppl._validation import check_int, check_key, is_key
from ebmppl.energy import Energy

__all__ = ["kernel_stein_discrepancy", "ksd_test", "KSDTest", "classifier_two_sample_test", "C2ST",
           "digits_feature_distance", "digit_classifier", "digit_features", "DigitClassifier", "frechet_distance"]


# ------------------------------------------------------------------------------------------------ KSD
def _imq_stein_matrix(xa, sa, xb, sb, inv_l2, c2, beta):
    """The Stein kernel ``u_p(x_a, x_b)`` of the IMQ kernel ``k = (c² + ‖x-y‖²/ℓ²)^β`` for all pairs ``(a, b)``.

    ``u_p(x, y) = s(x)·s(y) k + s(x)·∇_y k + s(y)·∇_x k + tr ∇_x∇_y k`` with ``s`` the score; with ``r = x - y`` and
    ``u = c² + ‖r‖²/ℓ²``: ``∇_x k = 2β u^(β-1) r/ℓ² = -∇_y k`` and
    ``tr ∇_x∇_y k = -(2β/ℓ²) (2(β-1) u^(β-2) ‖r‖²/ℓ² + D u^(β-1))``.
    """
    dim = xa.shape[1]
    na, nb = jnp.sum(xa * xa, 1), jnp.sum(xb * xb, 1)
    r2 = jnp.maximum(na[:, None] + nb[None, :] - 2.0 * xa @ xb.T, 0.0)
    u = c2 + r2 * inv_l2
    k = u ** beta
    # (s(y) - s(x)) · (x - y) expanded into matrix products (no (a, b, D) tensor)
    cross = xa @ sb.T - jnp.sum(sb * xb, 1)[None, :] - jnp.sum(sa * xa, 1)[:, None] + sa @ xb.T
    grad_term = 2.0 * beta * inv_l2 * u ** (beta - 1.0) * cross
    trace = -2.0 * beta * inv_l2 * (2.0 * (beta - 1.0) * u ** (beta - 2.0) * r2 * inv_l2 + dim * u ** (beta - 1.0))
    return (sa @ sb.T) * k + grad_term + trace


def _median_bandwidth(x: jax.Array, n: jax.Array, max_points: int = 1000) -> jax.Array:
    """Median of the pairwise distances of (at most ``max_points`` evenly spaced) of the first ``n`` rows of ``x``."""
    m = min(x.shape[0], max_points)
    src = jnp.floor(jnp.arange(m) * (n / m)).astype(jnp.int32)  # evenly spaced; repeats when n < m
    sub = x[src]
    sq = jnp.sum(sub * sub, 1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * sub @ sub.T, 0.0)
    iu = np.triu_indices(m, 1)
    distinct = src[iu[0]] != src[iu[1]]  # a row repeated is not a pair
    med = jnp.sqrt(jnp.nanmedian(jnp.where(distinct, d2[iu], jnp.nan)))
    return jnp.where(med > 0, med, 1.0)


def _bucket(n: int) -> int:
    """``n`` rounded up to 64, or above 64 to one of 8 sizes per octave (≤ 12.5 % padding): draws thinned to nearby
    sizes share a compiled program."""
    if n <= 64:
        return 64
    q = 2 ** (int(math.floor(math.log2(n))) - 3)
    return -(-n // q) * q


def _ksd_sums(x, s, weights, n, inv_l2, c2, beta, block):
    """``(Σ_{i≠j} h_ij, Σ_{i≠j} w_i w_j h_ij per bootstrap column)`` over the first ``n`` rows, by blocks of rows."""
    rows = x.shape[0]
    pad = (-rows) % block
    xp, sp = jnp.pad(x, ((0, pad), (0, 0))), jnp.pad(s, ((0, pad), (0, 0)))
    idx = jnp.arange(rows + pad)
    valid = idx < n
    wp = jnp.where(valid[:, None], jnp.pad(weights, ((0, pad), (0, 0))), 0.0)

    def body(carry, start):
        xr = lax.dynamic_slice_in_dim(xp, start, block)
        sr = lax.dynamic_slice_in_dim(sp, start, block)
        wr = lax.dynamic_slice_in_dim(wp, start, block)
        ir = lax.dynamic_slice_in_dim(idx, start, block)
        h = _imq_stein_matrix(xr, sr, xp, sp, inv_l2, c2, beta)
        keep = (ir[:, None] < n) & valid[None, :] & (ir[:, None] != idx[None, :])
        h = jnp.where(keep, h, 0.0)
        total, boot = carry
        return (total + jnp.sum(h), boot + jnp.sum((h @ wp) * wr, axis=0)), None

    init = (jnp.zeros((), x.dtype), jnp.zeros((weights.shape[1],), x.dtype))
    (total, boot), _ = lax.scan(body, init, jnp.arange(0, rows + pad, block))
    return total, boot


@eqx.filter_jit
def _ksd_program(energy: Energy, x: jax.Array, n: jax.Array, key: jax.Array, bandwidth: jax.Array | None,
                 num_bootstrap: int, block: int, c: float, beta: float):
    """KSD², its wild-bootstrap p-value, the bandwidth and whether the score is finite, from the first ``n`` rows of
    ``x`` (the rest is padding to a bucket size, so that many sizes share one compiled program)."""
    flat = x.reshape(x.shape[0], -1)
    valid = jnp.arange(flat.shape[0]) < n
    score = jnp.where(valid[:, None], jax.vmap(jax.grad(energy.logdensity_fn))(x).reshape(flat.shape), 0.0)
    ell = _median_bandwidth(flat, n) if bandwidth is None else jnp.asarray(bandwidth, flat.dtype)
    weights = jax.random.rademacher(key, (flat.shape[0], num_bootstrap), dtype=flat.dtype)
    total, boot = _ksd_sums(flat, score, weights, n, 1.0 / ell ** 2, c * c, beta, block)
    nf = n.astype(flat.dtype)
    norm = nf * (nf - 1.0)
    statistic = total / norm
    p_value = (1.0 + jnp.sum(boot / norm >= statistic)) / (1.0 + num_bootstrap)
    return statistic, p_value, ell, jnp.all(jnp.isfinite(score))


def _run_ksd(energy: Energy, x: jax.Array, key: jax.Array, ell: jax.Array | None, num_bootstrap: int,
             block_size: int, c: float, beta: float):
    n = x.shape[0]
    size = _bucket(n)
    x = np.asarray(x)  # pad on the host: no small eager programs compiled per size
    padded = np.concatenate([x, np.broadcast_to(x[:1], (size - n, *x.shape[1:]))]) if size > n else x
    out = _ksd_program(energy, padded, jnp.asarray(n, jnp.int32), key, ell, num_bootstrap, min(block_size, size),
                       float(c), float(beta))
    if not bool(out[3]):
        raise ValueError("the score -∇E/T is not finite at some draws; the energy is not differentiable there.")
    return float(out[0]), float(out[1]), float(out[2])


def _ksd_points(energy: Energy, samples: Any, name: str = "samples", thin: bool = True
                ) -> tuple[np.ndarray, int, float | None]:
    """``(flat (n, *event) draws, thinning interval, min ESS or None)`` of i.i.d. draws or of chains."""
    positions = getattr(samples, "positions", samples)
    try:
        x = jnp.asarray(positions)
    except TypeError:
        raise TypeError(f"{name} must be an array (n, *event_shape), chains (chain, draw, *event_shape) or an "
                        f"ebmppl.Samples, got {type(samples).__name__}.") from None
    k = len(energy.event_shape)
    if x.ndim < k + 1 or x.ndim > k + 2 or x.shape[x.ndim - k:] != energy.event_shape:
        raise ValueError(f"{name} has shape {x.shape}; pass independent draws (n, *{energy.event_shape}) or "
                         f"chains (chain, draw, *{energy.event_shape}) of the energy's event shape.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} has dtype {x.dtype}; pass real-valued draws (x.astype(jnp.float32)).")
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} holds NaN or infinite values; drop the diverged draws or chains first.")
    if x.ndim == k + 1:
        return np.asarray(x), 1, None
    chains, draws = x.shape[:2]
    if not thin:
        return np.asarray(x).reshape((-1, *energy.event_shape)), 1, None
    if draws < 4:
        raise ValueError(f"{name} has {draws} draws per chain; the ESS needs at least 4. Pass independent draws as "
                         f"(n, *event_shape) instead.")
    min_ess = float(_min_bulk_ess(x.reshape(chains, draws, -1)))
    if not math.isfinite(min_ess) or min_ess <= 0:
        raise ValueError(f"the effective sample size of {name} is not defined (constant chains?); check the chains "
                         f"with ebmppl.diagnostics.summary.")
    interval = max(1, math.ceil(chains * draws / min_ess))
    return np.asarray(x)[:, ::interval].reshape((-1, *energy.event_shape)), interval, min_ess


@jax.jit
def _min_bulk_ess(chains: jax.Array) -> jax.Array:
    """The smallest rank-normalised bulk ESS over coordinates of ``(chain, draw, D)`` (BlackJAX's, = ArviZ's)."""
    return jnp.nanmin(jax.vmap(lambda a: ess_bulk(a, chain_axis=0, sample_axis=1), in_axes=2)(chains))


def _check_continuous(energy: Any) -> Energy:
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an ebmppl.Energy, got {type(energy).__name__}.")
    if energy.support.is_discrete:
        raise ValueError("the kernel Stein discrepancy needs the score of a density on the real line; this energy "
                         f"has the discrete support {energy.support}. Use a two-sample test "
                         "(classifier_two_sample_test) against exact or trusted samples instead.")
    return energy


def _check_kernel(bandwidth: Any, c: float, beta: float, block_size: int) -> jax.Array | None:
    if not (isinstance(c, (int, float)) and c > 0):
        raise ValueError(f"c must be a number > 0, got {c!r}.")
    if not (isinstance(beta, (int, float)) and -1.0 < beta < 0.0):
        raise ValueError(f"beta must be in (-1, 0) (the IMQ kernel; Gorham & Mackey use -1/2), got {beta!r}.")
    check_int("block_size", block_size, 1)
    if bandwidth is None:
        return None
    if not (isinstance(bandwidth, (int, float)) and math.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a number > 0 or None (the median heuristic), got {bandwidth!r}.")
    return jnp.asarray(float(bandwidth))


def kernel_stein_discrepancy(energy: Energy, samples: Any, *, bandwidth: float | None = None, c: float = 1.0,
                             beta: float = -0.5, block_size: int = 512) -> float:
    """The squared kernel Stein discrepancy ``KSD²(q, p)`` of the draws ``samples ~ q`` from ``p ∝ exp(-E/T)``.

    The U-statistic ``1/(n(n-1)) Σ_{i≠j} u_p(x_i, x_j)`` of the Stein kernel
    ``u_p(x, y) = s(x)·s(y) k(x, y) + s(x)·∇_y k + s(y)·∇_x k + tr ∇_x∇_y k`` with the score
    ``s = ∇ₓ log p = -∇E/T`` (:meth:`ebmppl.Energy.score`'s convention, so the temperature counts) and the inverse
    multiquadric kernel ``k(x, y) = (c² + ‖x-y‖²/ℓ²)^β`` (Gorham & Mackey 2017: with ``β ∈ (-1, 0)`` KSD → 0
    implies weak convergence for distantly dissipative ``p``). It is unbiased for ``KSD²``, which is 0 if and only if
    ``q = p``; it needs no ``log Z``. Cost ``O(n² D)`` time, ``O(block_size · n)`` memory.

    Parameters
    ----------
    energy
        A continuous :class:`~ebmppl.Energy`.
    samples
        Draws ``(n, *event_shape)`` (all used), chains ``(chain, draw, *event_shape)`` or an
        :class:`~ebmppl.Samples` (pooled, unthinned: the U-statistic stays unbiased for correlated draws).
    bandwidth
        ``ℓ``; default the median of the pairwise distances of the draws (at most 1,000 of them, evenly spaced).
    c, beta
        The IMQ kernel's constants (default ``c = 1``, ``β = -1/2``).
    block_size
        Rows of the ``n × n`` Stein-kernel matrix held in memory at once.

    Returns
    -------
    float
        ``KSD²`` (it can be slightly negative: a U-statistic).

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])
    >>> x = t.sample(jax.random.key(0), 500)
    >>> good = kernel_stein_discrepancy(t.energy, x)
    >>> bad = kernel_stein_discrepancy(t.energy, 1.5 * x)
    >>> abs(good) < 0.01 < bad
    True
    """
    energy = _check_continuous(energy)
    ell = _check_kernel(bandwidth, c, beta, block_size)
    x, _, _ = _ksd_points(energy, samples, thin=False)
    if x.shape[0] < 2:
        raise ValueError(f"samples must hold at least 2 draws, got {x.shape[0]}.")
    return _run_ksd(energy, x, jax.random.key(0), ell, 0, block_size, c, beta)[0]


class KSDTest(NamedTuple):
    """The result of :func:`ksd_test`; ``str(result)`` is its verdict.

    Attributes
    ----------
    statistic
        ``KSD²`` (the U-statistic of :func:`kernel_stein_discrepancy`) of the draws tested.
    p_value
        Wild-bootstrap p-value of ``H₀: the draws come from p``.
    reject
        ``p_value < alpha``.
    alpha
        The level.
    bandwidth
        The kernel bandwidth ``ℓ`` used.
    num_samples
        Draws tested (after thinning).
    num_bootstrap
        Bootstrap replicates.
    thinning
        Every ``thinning``-th draw of each chain was kept (1 for independent draws).
    ess
        The smallest bulk ESS over coordinates of the chains (``None`` for independent draws).
    verdict
        What the result says, and what it cannot.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.0], [[1.0]])
    >>> r = ksd_test(t.energy, jax.random.key(1), 2.0 * t.sample(jax.random.key(0), 200), num_bootstrap=200)
    >>> r.reject, r.num_samples, r.thinning, str(r).startswith("KSD test rejects")
    (True, 200, 1, True)
    """

    statistic: float
    p_value: float
    reject: bool
    alpha: float
    bandwidth: float
    num_samples: int
    num_bootstrap: int
    thinning: int
    ess: float | None
    verdict: str

    def __str__(self) -> str:
        return self.verdict


_KSD_MIN_DRAWS = 10  # fewer draws than this are refused
_KSD_FEW_DRAWS = 200  # a pass from fewer draws than this is said to have little power (a stranger's too-narrow ULA
# passed with 148 thinned draws, p = 0.77, while C2ST rejected it)


def ksd_test(energy: Energy, key: jax.Array, samples: Any, *, num_bootstrap: int = 1000, alpha: float = 0.05,
             bandwidth: float | None = None, c: float = 1.0, beta: float = -0.5, block_size: int = 512) -> KSDTest:
    """Test ``H₀: samples ~ p ∝ exp(-E/T)`` with the kernel Stein discrepancy and a wild bootstrap.

    The statistic is :func:`kernel_stein_discrepancy`'s U-statistic. Under ``H₀`` it is a degenerate U-statistic,
    and its null distribution is that of ``1/(n(n-1)) Σ_{i≠j} W_i W_j u_p(x_i, x_j)`` with independent Rademacher
    ``W`` (the wild bootstrap of Chwialkowski, Strathmann & Gretton 2016, from Arcones & Giné 1992); the p-value is
    ``(1 + #{bootstrap ≥ statistic}) / (1 + num_bootstrap)``.

    **Independence.** The wild bootstrap with independent weights is only right for independent draws: MCMC draws
    are correlated, and the test would then reject far too often. Independent draws are given as
    ``(n, *event_shape)`` and used as they are. Chains ``(chain, draw, *event_shape)`` (or an
    :class:`~ebmppl.Samples`) are thinned first: every ``k``-th draw of each chain is kept, with
    ``k = ⌈chains·draws / ESS⌉`` and ESS the smallest bulk effective sample size over coordinates
    (:func:`ebmppl.diagnostics.ess`'s, computed by BlackJAX inside jit), so about ESS nearly independent draws are
    tested. Thinning by the bulk ESS
    removes most of the correlation, not all of it (the ESS of other functions of the draws can be smaller): read a
    p-value near ``alpha`` from chains with care. Chains that have not mixed (high R-hat) usually fail the test,
    rightly: their draws do not come from ``p``.

    Parameters
    ----------
    energy
        A continuous :class:`~ebmppl.Energy`.
    key
        PRNG key of the bootstrap weights (2nd, the ebmppl convention).
    samples
        Independent draws ``(n, *event_shape)``, or chains ``(chain, draw, *event_shape)`` / an
        :class:`~ebmppl.Samples` (thinned by ESS, see above).
    num_bootstrap
        Bootstrap replicates (the smallest possible p-value is ``1 / (1 + num_bootstrap)``).
    alpha
        Level of the test (``reject = p_value < alpha``).
    bandwidth, c, beta, block_size
        As in :func:`kernel_stein_discrepancy`. The bootstrap costs ``O(n² · num_bootstrap)`` on top of the
        statistic's ``O(n² D)`` (n = 5,000, 1,000 replicates: a few seconds on a CPU).

    Returns
    -------
    KSDTest
        Statistic, p-value, ``reject``, the bandwidth, the draws tested, the thinning, and the ``verdict``.

    Raises
    ------
    ValueError
        A discrete energy (no score), draws of the wrong shape or with NaN, fewer than 10 draws left to test, a
        non-finite score, ``alpha`` outside (0, 1).

    Notes
    -----
    What a rejection says: the draws do not come from ``p`` (a biased sampler, or an energy that does not fit
    the data). What no rejection does **not** say: that they do. The Stein discrepancy sees the score only where
    the draws are, so it is nearly blind to the *weights* of well-separated modes (draws from one mode of a
    two-mode ``p`` can pass; Wenliang & Kanagawa 2020), and its power falls with the dimension.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])
    >>> x = t.sample(jax.random.key(0), 300)
    >>> ksd_test(t.energy, jax.random.key(1), x).reject
    False
    >>> r = ksd_test(t.energy, jax.random.key(1), 1.5 * x)
    >>> r.reject, r.p_value < 0.01
    (True, True)
    """
    energy = _check_continuous(energy)
    if not is_key(key) and is_key(samples):
        raise TypeError("ksd_test takes the key second (the ebmppl convention, as ebmppl.sample): "
                        "ksd_test(energy, key, samples).")
    key = check_key(key)
    ell = _check_kernel(bandwidth, c, beta, block_size)
    num_bootstrap = check_int("num_bootstrap", num_bootstrap, 1)
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}.")
    x, interval, min_ess = _ksd_points(energy, samples)
    n = x.shape[0]
    if n < _KSD_MIN_DRAWS:
        if min_ess is None:
            raise ValueError(f"ksd_test needs at least {_KSD_MIN_DRAWS} independent draws, got {n}; pass more draws "
                             f"(a few hundred or more for a test with power).")
        raise ValueError(f"only {n} draws are left to test (thinning keeps 1 draw in {interval} of each chain, by the "
                         f"min bulk ESS {min_ess:.1f}), and ksd_test needs at least {_KSD_MIN_DRAWS}; run longer "
                         "chains, or more of them.")
    stat, p, ell_used = _run_ksd(energy, x, key, ell, num_bootstrap, block_size, c, beta)
    reject = p < alpha
    source = "independent draws" if min_ess is None else \
        f"draws thinned to every {interval}-th of each chain (min bulk ESS {min_ess:.0f})"
    if reject:
        verdict = (f"KSD test rejects that the {n} {source} come from the energy: KSD² = {stat:.3g}, "
                   f"p = {p:.3g} < α = {alpha:g}.")
    else:
        verdict = (f"KSD test finds no evidence against the energy from {n} {source}: KSD² = {stat:.3g}, "
                   f"p = {p:.3g} ≥ α = {alpha:g}. This does not show the fit is right: the test is nearly blind "
                   f"to the weights of separated modes and weak in high dimension.")
        if n < _KSD_FEW_DRAWS:
            more = "longer chains" if min_ess is not None else "more draws"
            verdict += (f" A pass with only {n} draws has little power (a too-narrow or too-wide sampler can pass): "
                        f"check with classifier_two_sample_test, or test {more}.")
    return KSDTest(stat, p, reject, float(alpha), float(ell_used), n, num_bootstrap, interval, min_ess, verdict)


# ------------------------------------------------------------------------------------------------ C2ST
def _init_mlp(key: jax.Array, sizes: Sequence[int]) -> list[tuple[jax.Array, jax.Array]]:
    keys = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (a, b)) * math.sqrt(2.0 / a), jnp.zeros(b))
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def _mlp_features(params, x):
    for w, b in params[:-1]:
        x = jax.nn.silu(x @ w + b)
    return x


def _mlp_logits(params, x):
    w, b = params[-1]
    return _mlp_features(params, x) @ w + b


@functools.partial(jax.jit, static_argnames=("hidden", "num_steps", "batch_size"))
def _c2st_train(key, x_train, y_train, x_test, y_test, learning_rate, hidden, num_steps, batch_size):
    k_init, k_batches = jax.random.split(key)
    params = _init_mlp(k_init, (x_train.shape[1], *hidden, 1))
    opt = optax.adam(learning_rate)

    def loss(p, xb, yb):
        return jnp.mean(optax.sigmoid_binary_cross_entropy(_mlp_logits(p, xb)[:, 0], yb))

    def step(carry, k):
        p, state = carry
        idx = jax.random.randint(k, (batch_size,), 0, x_train.shape[0])
        grads = jax.grad(loss)(p, x_train[idx], y_train[idx])
        updates, state = opt.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = lax.scan(step, (params, opt.init(params)), jax.random.split(k_batches, num_steps))
    predictions = (_mlp_logits(params, x_test)[:, 0] > 0).astype(y_test.dtype)
    return jnp.sum(predictions == y_test)


class C2ST(NamedTuple):
    """The result of :func:`classifier_two_sample_test`; ``str(result)`` is its verdict.

    Attributes
    ----------
    accuracy
        Held-out accuracy of the classifier telling the two sets apart (1/2: it cannot).
    p_value
        One-sided binomial p-value of ``accuracy`` against 1/2.
    reject
        ``p_value < alpha``.
    alpha
        The level.
    accuracy_stderr
        ``√(1/(4 · num_test))``, the standard error of the accuracy under ``H₀``.
    num_test
        Held-out examples (half from each set).
    verdict
        What the result says, and what it cannot.

    Examples
    --------
    >>> r = C2ST(0.62, 1e-4, True, 0.05, 0.025, 400, "C2ST rejects ...")
    >>> r.reject, round((r.accuracy - 0.5) / r.accuracy_stderr, 1)   # 4.8 null standard errors above 1/2
    (True, 4.8)
    """

    accuracy: float
    p_value: float
    reject: bool
    alpha: float
    accuracy_stderr: float
    num_test: int
    verdict: str

    def __str__(self) -> str:
        return self.verdict


def _flat_points(x: Any, name: str) -> np.ndarray:
    positions = getattr(x, "positions", x)
    try:
        arr = np.asarray(positions)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of examples, got {type(x).__name__}.") from None
    if not np.issubdtype(arr.dtype, np.number) or arr.ndim < 1:
        raise TypeError(f"{name} must be a numeric array of examples (n, *event_shape), got dtype {arr.dtype}.")
    return arr


def classifier_two_sample_test(samples: Any, data: Any, key: jax.Array, *, hidden: Sequence[int] = (64, 64),
                               num_steps: int = 1000, batch_size: int = 128, learning_rate: float = 3e-3,
                               alpha: float = 0.05) -> C2ST:
    """Classifier two-sample test (Lopez-Paz & Oquab 2017): can a small network tell ``samples`` from ``data``?

    Both sets are cut to the same size ``m`` (a random subset of the larger), each is split in halves, an MLP
    (``hidden`` SiLU layers, inputs standardised by the training half, Adam, ``num_steps`` minibatch steps in one
    jitted ``lax.scan``) learns to label the training halves, and its accuracy is measured on the held-out halves
    (``m`` examples, exactly half from each set). Under ``H₀`` (one distribution) the classifier is independent of
    the held-out labels, so the number it gets right is at most as spread as ``Binomial(m, 1/2)`` (labels of an
    exactly balanced set are drawn without replacement): the one-sided binomial p-value is valid, slightly
    conservative.

    Parameters
    ----------
    samples, data
        Examples ``(n, *event_shape)`` and ``(m, *event_shape)`` (same event shape; chains
        ``(chain, draw, *event_shape)`` or an :class:`~ebmppl.Samples` are pooled; correlation between draws does
        not invalidate the test, which conditions on the training half, but lowers its power).
    key
        PRNG key (subsets, split, initialisation, minibatches).
    hidden, num_steps, batch_size, learning_rate
        The classifier and its training.
    alpha
        Level of the test.

    Returns
    -------
    C2ST
        Held-out accuracy, p-value, ``reject``, the accuracy's null standard error and the ``verdict``.

    Notes
    -----
    A rejection says the sets differ, and the accuracy says how easily. No rejection says only that *this*
    classifier, with this much data, found no difference: a weak or under-trained classifier has little power,
    and differences it cannot represent (e.g. in the fine structure of images) go unseen. Accuracy near 1/2 is not
    a proof of equality.

    Examples
    --------
    >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    >>> a = jax.random.normal(k1, (400, 2))
    >>> classifier_two_sample_test(a, 1.0 + jax.random.normal(k2, (400, 2)), k3, num_steps=300).reject
    True
    """
    key = check_key(key)
    for name, value in (("num_steps", num_steps), ("batch_size", batch_size)):
        check_int(name, value, 1)
    hidden = tuple(int(h) for h in hidden)
    if not hidden or any(h < 1 for h in hidden):
        raise ValueError(f"hidden must be a non-empty sequence of layer widths >= 1, got {hidden!r}.")
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}.")
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}.")
    x, y = _flat_points(samples, "samples"), _flat_points(data, "data")
    event = y.shape[1:]
    if x.shape[x.ndim - len(event):] != event or x.ndim < len(event) + 1:
        raise ValueError(f"samples have shape {x.shape} but data examples have shape {event}; pass examples of the "
                         f"same shape (n, *{event}).")
    x, y = x.reshape(-1, math.prod(event) if event else 1), y.reshape(y.shape[0], -1)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("samples and data must be finite; drop diverged draws first.")
    m = min(x.shape[0], y.shape[0])
    half = m // 2
    if half < 10:
        raise ValueError(f"each set needs at least 20 examples, got {x.shape[0]} and {y.shape[0]}.")
    k_x, k_y, k_fit = jax.random.split(key, 3)
    x = x[np.asarray(jax.random.permutation(k_x, x.shape[0]))[:m]]
    y = y[np.asarray(jax.random.permutation(k_y, y.shape[0]))[:m]]
    x_train = np.concatenate([x[:half], y[:half]]).astype(np.float32)
    x_test = np.concatenate([x[half:2 * half], y[half:2 * half]]).astype(np.float32)
    labels = np.concatenate([np.zeros(half), np.ones(half)]).astype(np.float32)
    mean, std = x_train.mean(0), x_train.std(0)
    std = np.where(std > 0, std, 1.0)
    correct = int(_c2st_train(k_fit, (x_train - mean) / std, labels, (x_test - mean) / std, labels,
                              float(learning_rate), hidden, int(num_steps), int(min(batch_size, 2 * half))))
    n_test = 2 * half
    from scipy.stats import binom

    p = float(binom.sf(correct - 1, n_test, 0.5))
    accuracy = correct / n_test
    reject = p < alpha
    se = math.sqrt(0.25 / n_test)
    if reject:
        verdict = (f"C2ST rejects that the two sets come from one distribution: held-out accuracy {accuracy:.3f} "
                   f"(± {se:.3f} under H₀) on {n_test} examples, p = {p:.3g} < α = {alpha:g}.")
    else:
        verdict = (f"C2ST finds no difference: held-out accuracy {accuracy:.3f} (± {se:.3f} under H₀) on "
                   f"{n_test} examples, p = {p:.3g} ≥ α = {alpha:g}. This does not show the sets are alike: a "
                   f"small classifier misses differences it cannot represent.")
    return C2ST(accuracy, p, reject, float(alpha), se, n_test, verdict)


# ------------------------------------------------------------------------------------- digits features
class DigitClassifier(NamedTuple):
    """The small classifier behind :func:`digits_feature_distance` (from :func:`digit_classifier`).

    Attributes
    ----------
    params
        ``[(W, b), ...]`` of the MLP ``64 → 128 → 64 → 10`` (SiLU); the 64 penultimate units are the features.
    test_accuracy
        Accuracy on ``load_digits("test")`` (held out from training).
    seed
        Seed of its initialisation and minibatches.

    Examples
    --------
    >>> clf = DigitClassifier(_init_mlp(jax.random.key(0), (64, 128, 64, 10)), float("nan"), 0)   # untrained
    >>> [w.shape for w, _ in clf.params]
    [(64, 128), (128, 64), (64, 10)]
    """

    params: Any
    test_accuracy: float
    seed: int


@functools.partial(jax.jit, static_argnames=("num_steps",))
def _train_digits(key, x, y, num_steps):
    k_init, k_batches = jax.random.split(key)
    params = _init_mlp(k_init, (64, 128, 64, 10))
    opt = optax.adamw(2e-3, weight_decay=1e-4)

    def loss(p, xb, yb):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(_mlp_logits(p, xb), yb))

    def step(carry, k):
        p, state = carry
        idx = jax.random.randint(k, (128,), 0, x.shape[0])
        xb = x[idx] + 0.1 * jax.random.normal(jax.random.fold_in(k, 1), (128, 64))  # light noise: smoother features
        updates, state = opt.update(jax.grad(loss)(p, xb, y[idx]), state, p)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = lax.scan(step, (params, opt.init(params)), jax.random.split(k_batches, num_steps))
    return params


@functools.lru_cache(maxsize=4)
def digit_classifier(seed: int = 0) -> DigitClassifier:
    """The digits classifier, trained once per process and seed (about a second on a CPU) and kept in memory.

    An MLP ``64 → 128 → 64 → 10`` with SiLU, trained with AdamW (1,000 minibatch steps of 128, inputs jittered by
    ``N(0, 0.1²)``) on ``load_digits("train")``; deterministic for a given seed and JAX version. Nothing is written
    to disk.

    Examples
    --------
    >>> clf = digit_classifier()
    >>> clf.test_accuracy > 0.9
    True
    """
    from ebmppl.data.digits import load_digits

    seed = int(seed)
    x, y = load_digits("train")
    x_test, y_test = load_digits("test")
    params = _train_digits(jax.random.key(seed), jnp.asarray(x.reshape(-1, 64)), jnp.asarray(y), 1000)
    predicted = jnp.argmax(_mlp_logits(params, jnp.asarray(x_test.reshape(-1, 64))), axis=1)
    return DigitClassifier(params, float(jnp.mean(predicted == jnp.asarray(y_test))), seed)


def _digit_rows(x: Any, name: str) -> jax.Array:
    arr = jnp.asarray(getattr(x, "positions", x))
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(f"{name} has dtype {arr.dtype}; pass float images scaled to [-1, 1] like load_digits.")
    if arr.shape[-3:] == (1, 8, 8):
        lead = arr.shape[:-3]
    elif arr.shape[-2:] == (8, 8):
        lead = arr.shape[:-2]
    elif arr.shape[-1:] == (64,):
        lead = arr.shape[:-1]
    else:
        raise ValueError(f"{name} has shape {arr.shape}; pass 8x8 digits as (..., 1, 8, 8), (..., 8, 8) or "
                         f"(..., 64), scaled to [-1, 1] like ebmppl.data.load_digits.")
    return arr.reshape(math.prod(lead), 64)


def digit_features(x: Any, seed: int = 0) -> jax.Array:
    """Penultimate-layer features ``(n, 64)`` of digits ``(..., 1, 8, 8)`` in ``[-1, 1]`` (:func:`digit_classifier`).

    Examples
    --------
    >>> from ebmppl.data import load_digits
    >>> digit_features(load_digits("test")[0][:5]).shape
    (5, 64)
    """
    rows = _digit_rows(x, "x")
    return _mlp_features(digit_classifier(seed).params, rows)


def frechet_distance(a: Any, b: Any) -> float:
    """Fréchet (2-Wasserstein) distance² between Gaussians fitted to the rows of ``a`` and of ``b``.

    ``‖μ_a - μ_b‖² + tr Σ_a + tr Σ_b - 2 tr (Σ_a^½ Σ_b Σ_a^½)^½``, in float64.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> round(frechet_distance(rng.normal(size=(4000, 2)), 1.0 + rng.normal(size=(4000, 2))), 1)
    2.0
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"a and b must be (n, d) and (m, d) with n, m >= 2, got {a.shape} and {b.shape}.")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    cross = np.sum(np.sqrt(np.clip(middle, 0.0, None)))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)


def digits_feature_distance(samples: Any, reference: Any, *, seed: int = 0) -> float:
    """The "FID" of the 8x8 digits: Fréchet distance between the classifier features of ``samples`` and ``reference``.

    Features are the 64 penultimate units of :func:`digit_classifier` (trained in the library on
    ``load_digits("train")``, held-out accuracy in ``digit_classifier().test_accuracy``, about 0.99); a Gaussian
    is fitted to each set's features and :func:`frechet_distance` compares them. 0 for identical sets.

    Like the FID it is biased upward at finite sample size (the fitted covariances are noisy): compare
    distances computed with the same numbers of examples, and read the distance between two halves of the real
    data as the floor. It says how far the *feature statistics* are apart, not whether each sample is a digit: a
    model that copies the training set scores perfectly.

    Parameters
    ----------
    samples, reference
        Digits ``(..., 1, 8, 8)``, ``(..., 8, 8)`` or ``(..., 64)`` scaled to ``[-1, 1]`` like
        :func:`ebmppl.data.load_digits` (chains ``(chain, draw, 1, 8, 8)`` are pooled); at least 65 of each is
        advised (the feature covariance is 64×64).
    seed
        Seed of the classifier.

    Examples
    --------
    >>> from ebmppl.data import load_digits
    >>> x, _ = load_digits("all")
    >>> same = digits_feature_distance(x[::2], x[1::2])
    >>> noise = digits_feature_distance(np.random.default_rng(0).uniform(-1, 1, x[::2].shape), x[1::2])
    >>> same < 0.1 * noise
    True
    """
    fs = np.asarray(digit_features(samples, seed))
    fr = np.asarray(digit_features(reference, seed))
    if not (np.all(np.isfinite(fs)) and np.all(np.isfinite(fr))):
        raise ValueError("samples and reference must be finite; drop diverged draws first.")
    if min(fs.shape[0], fr.shape[0]) < 65:
        warnings.warn(f"digits_feature_distance with {fs.shape[0]} samples and {fr.shape[0]} references: fewer "
                      "than 65 makes the 64×64 feature covariance singular and the distance strongly biased.",
                      UserWarning, stacklevel=2)
    return frechet_distance(fs, fr)
