"""Exact ground truth for discrete energies: ``log Z``, expectations and log-likelihoods.

* :func:`enumerate_log_partition` / :func:`exact_expectation` sum over every
  state of the energy's support (up to ``2**22`` states), streamed in chunks
  so memory stays ``O(chunk_size)``.
* :func:`ising_log_partition`: the 2-D Ising ``log Z`` on an ``L1 × L2``
  lattice (torus or open) by the row-to-row transfer matrix
  (``2**min(L1, L2)`` states per row, float64); :func:`kaufman_log_partition`:
  Kaufman's closed form on the torus in zero field.
* :func:`rbm_log_partition`: an RBM's ``log Z``, summing out the smaller layer
  in closed form and enumerating the other (12 hidden units: 4096 terms,
  however many visible units).

Precision
---------
Enumeration runs in the energy's dtype (float32 by default). Each chunk's
log-sum-exp is taken stably, then the chunk values are combined by a second
log-sum-exp; the summation error is then a few float32 ulps of ``Z``
(relative ``~1e-6``), and the result's absolute error is dominated by the
float32 rounding of the energies themselves: about ``1e-7 · max|E/T|`` nats
(``~1e-5`` nats for energies of size 100). Enable ``jax_enable_x64`` for
float64 throughout.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebmppl._validation import check_energy
from ebmppl.discrete.energies import RBM, _as_rbm, _rbm_free_energy, lattice_couplings
from ebmppl.energy import Energy
from ebmppl.support import BINARY, MAX_ENUMERATE

__all__ = [
    "enumerate_log_partition", "exact_expectation", "exact_log_likelihood", "ising_log_partition",
    "kaufman_log_partition", "rbm_log_partition",
]

DEFAULT_CHUNK = 2**14


def _discrete(energy: Energy, what: str) -> int:
    check_energy(energy)
    support = energy.support
    if not support.is_discrete:
        raise ValueError(f"{what} needs a discrete energy; this one's support is {support!r}. Declare it with "
                         "Energy(..., support=BINARY / SPINS / Categorical(K)), or estimate log Z of a continuous "
                         "energy with ebmppl.log_partition.")
    n = support.num_states(energy.event_shape)
    if n > MAX_ENUMERATE:
        support.enumerate(energy.event_shape)  # raises the ValueError that names the alternatives
    return n


def _chunks(num_states: int, chunk_size: int) -> tuple[int, int]:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int ≥ 1, got {chunk_size!r}.")
    chunk = min(int(chunk_size), num_states)
    return chunk, -(-num_states // chunk)


def _chunk_logdensities(energy: Energy, start: jax.Array, chunk: int, num_states: int):
    index = start + jnp.arange(chunk, dtype=jnp.int32)
    valid = index < num_states
    states = energy.support.from_index(jnp.minimum(index, num_states - 1), energy.event_shape)
    logd = jax.vmap(energy.logdensity_fn)(states)
    return states, jnp.where(valid, logd, -jnp.inf)


@functools.partial(jax.jit, static_argnames=("chunk", "num_chunks", "num_states"))
def _log_partition(energy: Energy, chunk: int, num_chunks: int, num_states: int) -> jax.Array:
    def one(c):
        _, logd = _chunk_logdensities(energy, c * chunk, chunk, num_states)
        return jax.nn.logsumexp(logd)

    return jax.nn.logsumexp(jax.lax.map(one, jnp.arange(num_chunks, dtype=jnp.int32)))


def enumerate_log_partition(energy: Energy, *, chunk_size: int = DEFAULT_CHUNK) -> jax.Array:
    """``log Z = log Σₓ exp(-E(x)/T)`` by summing over every state of a discrete energy's support.

    States are generated chunk by chunk (``chunk_size`` at a time, never all
    at once), their log-densities reduced by a stable log-sum-exp per chunk and
    across chunks (see the module's precision note). At most ``2**22`` states;
    beyond that the ``ValueError`` names the alternatives (AIS, the transfer
    matrix, :func:`rbm_log_partition`). Jit-compiled; a new ``params`` does not
    recompile.

    Parameters
    ----------
    energy
        An :class:`~ebmppl.Energy` with a discrete support.
    chunk_size
        States per chunk (memory ``O(chunk_size · dim)``).

    Examples
    --------
    Three independent spins in a field ``h``: ``log Z = 3 log(2 cosh h)``.

    >>> import jax.numpy as jnp
    >>> from ebmppl.discrete import ising
    >>> e = ising(jnp.zeros((3, 3)), field=0.5)
    >>> round(float(enumerate_log_partition(e)), 5), round(3 * float(jnp.log(2 * jnp.cosh(0.5))), 5)
    (2.43979, 2.43979)
    """
    n = _discrete(energy, "enumerate_log_partition")
    chunk, num_chunks = _chunks(n, chunk_size)
    return _log_partition(energy, chunk, num_chunks, n)


@functools.partial(jax.jit, static_argnames=("fn", "chunk", "num_chunks", "num_states"))
def _expectation(energy: Energy, fn: Callable, chunk: int, num_chunks: int, num_states: int):
    def one(c):
        states, logd = _chunk_logdensities(energy, c * chunk, chunk, num_states)
        lse = jax.nn.logsumexp(logd)
        w = jnp.exp(logd - lse)  # weights within the chunk, summing to 1
        values = jax.vmap(fn)(states)
        mean = jax.tree.map(lambda v: jnp.tensordot(w.astype(v.dtype), v, axes=1), values)
        return lse, mean

    lses, means = jax.lax.map(one, jnp.arange(num_chunks, dtype=jnp.int32))
    w = jnp.exp(lses - jax.nn.logsumexp(lses))
    return jax.tree.map(lambda m: jnp.tensordot(w.astype(m.dtype), m, axes=1), means)


def exact_expectation(energy: Energy, fn: Callable[[jax.Array], Any], *, chunk_size: int = DEFAULT_CHUNK) -> Any:
    """``E_p[fn(x)]`` exactly, summing over every state of a discrete energy (``p ∝ exp(-E/T)``).

    ``fn`` maps ONE state (shape ``event_shape``) to an array or a pytree of
    arrays (e.g. the magnetisation and the pair correlations ``x xᵀ``); the
    result has the same structure. Streamed in chunks like
    :func:`enumerate_log_partition`; ``fn`` is a static argument (pass the same
    function object to reuse the compilation).

    Examples
    --------
    Two coupled spins: ``E[x₁x₂] = tanh(β J)``, ``E[x₁] = 0``.

    >>> import jax.numpy as jnp
    >>> from ebmppl.discrete import ising
    >>> e = ising(jnp.array([[0.0, 1.0], [1.0, 0.0]]), beta=0.5)
    >>> moments = exact_expectation(e, lambda x: {"m": x.mean(), "xx": jnp.outer(x, x)})
    >>> round(float(moments["m"]), 6) == 0.0, round(float(moments["xx"][0, 1]), 5), round(float(jnp.tanh(0.5)), 5)
    (True, 0.46212, 0.46212)
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function of one state, got {type(fn).__name__}.")
    n = _discrete(energy, "exact_expectation")
    chunk, num_chunks = _chunks(n, chunk_size)
    return _expectation(energy, fn, chunk, num_chunks, n)


def exact_log_likelihood(energy: Energy, data: jax.Array, *, log_z: float | jax.Array | None = None) -> jax.Array:
    """Mean exact log-likelihood ``(1/N) Σₙ log p(xₙ) = mean(-E(xₙ)/T) - log Z`` of ``data``.

    ``log Z`` comes from :func:`rbm_log_partition` for an energy built by
    :func:`ebmppl.discrete.rbm`, from :func:`enumerate_log_partition`
    otherwise, or from ``log_z`` when given (e.g. the transfer matrix's).
    Every row of ``data`` must be a state of the support (a ``ValueError``
    names the first that is not).

    Examples
    --------
    A fair coin per coordinate: ``log p = -n log 2`` for every ``x``.

    >>> import jax.numpy as jnp
    >>> from ebmppl.discrete import ising
    >>> e = ising(jnp.zeros((4, 4)), spins=False)
    >>> round(float(exact_log_likelihood(e, jnp.ones((3, 4)))), 5), round(-4 * float(jnp.log(2.0)), 5)
    (-2.77259, -2.77259)
    """
    check_energy(energy)
    data = jnp.asarray(data)
    if not energy.support.is_discrete:
        raise ValueError(f"exact_log_likelihood needs a discrete energy; this one's support is {energy.support!r}.")
    energy.support.check(data, energy.event_shape, name="data")
    if log_z is None:
        if energy.energy_fn is _rbm_free_energy and energy.temperature == 1.0:
            log_z = rbm_log_partition(energy)
        else:
            log_z = enumerate_log_partition(energy)
    return jnp.mean(energy.logdensity(data)) - log_z


def rbm_log_partition(model: RBM | Energy, *, chunk_size: int = DEFAULT_CHUNK) -> jax.Array:
    """An RBM's exact ``log Z = log Σ_{v,h} exp(-E(v, h))``, summing the smaller layer out in closed form.

    With ``num_hidden ≤ num_visible`` it enumerates ``h`` (``2**num_hidden``
    terms, each ``exp(-F(h))`` with ``F(h) = -cᵀh - Σᵢ softplus(bᵢ + (Wh)ᵢ)``),
    so 12 hidden units cost 4096 terms whatever the number of visible units;
    otherwise it enumerates ``v`` with the free energy. The smaller layer may
    have at most 22 units. Same precision as :func:`enumerate_log_partition`.

    Parameters
    ----------
    model
        An :class:`~ebmppl.discrete.RBM`, or the :class:`~ebmppl.Energy` that
        :func:`ebmppl.discrete.rbm` returns (at temperature 1).
    chunk_size
        States per chunk of the enumeration.

    Examples
    --------
    With ``W = 0``: ``log Z = Σᵢ log(1 + e^{bᵢ}) + Σⱼ log(1 + e^{cⱼ})``.

    >>> import jax.numpy as jnp
    >>> from ebmppl.discrete import RBM
    >>> r = RBM(jnp.zeros((30, 2)), jnp.full(30, 0.5), jnp.array([1.0, -1.0]))
    >>> round(float(rbm_log_partition(r)), 4)
    30.8488
    >>> round(float(30 * jnp.logaddexp(0, 0.5) + jnp.logaddexp(0, 1) + jnp.logaddexp(0, -1)), 4)
    30.8488
    """
    if isinstance(model, Energy) and model.energy_fn is _rbm_free_energy:
        if not isinstance(model.temperature, jax.core.Tracer) and float(model.temperature) != 1.0:
            raise ValueError(f"rbm_log_partition sums the RBM's joint at temperature 1; this energy has "
                             f"temperature {model.temperature}. Use enumerate_log_partition(energy) for "
                             "p ∝ exp(-F/T).")
    elif isinstance(model, Energy):
        raise TypeError("rbm_log_partition takes an ebmppl.discrete.RBM or the Energy that ebmppl.discrete.rbm() "
                        "returns; for other discrete energies use enumerate_log_partition.")
    rbm = _as_rbm(model, "model")
    nv, nh = rbm.num_visible, rbm.num_hidden
    if min(nv, nh) > 22:
        raise ValueError(f"both layers of this RBM are large ({nv} visible, {nh} hidden units; at most 22 can be "
                         "enumerated): estimate log Z with AIS (Salakhutdinov & Murray 2008) instead.")
    if nh <= nv:
        layer = Energy(_hidden_free_energy, rbm, event_shape=(nh,), support=BINARY, validate=False)
    else:
        layer = Energy(_rbm_free_energy, rbm, event_shape=(nv,), support=BINARY, validate=False)
    return enumerate_log_partition(layer, chunk_size=chunk_size)


def _hidden_free_energy(rbm: RBM, h: jax.Array) -> jax.Array:
    return rbm.visible_free_energy(h)


# ------------------------------------------------------------ 2-D Ising
def _check_side(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int ≥ 1, got {value!r}.")
    return int(value)


def ising_log_partition(
    L1: int,
    L2: int,
    coupling: float = 1.0,
    field: float = 0.0,
    beta: float = 1.0,
    periodic: bool = True,
) -> float:
    """Exact ``log Z`` of the 2-D Ising model on an ``L1 × L2`` lattice, by the transfer matrix (float64).

    The model is :func:`ebmppl.discrete.ising` with ``lattice=(L1, L2)``:
    ``E(x) = -β (J Σ_{i~j} xᵢxⱼ + h Σᵢ xᵢ)`` on ±1 spins, torus or open
    boundaries, the same bond conventions as
    :func:`~ebmppl.discrete.lattice_couplings` (a periodic side of 2 bonds a
    pair twice, a side of 1 has no bonds). The row-to-row transfer matrix has
    ``2**min(L1, L2)`` rows (at most ``2**13``); its symmetric form is
    diagonalised once, so the other side may be long (``log Z`` of a
    ``10 × 1000`` strip costs the same as of a ``10 × 10`` square).

    Parameters
    ----------
    L1, L2
        Side lengths.
    coupling
        ``J`` (``> 0`` ferromagnetic).
    field
        ``h``, uniform.
    beta
        Inverse temperature ``β > 0``.
    periodic
        Torus (default) or open boundaries on both axes.

    Examples
    --------
    Agrees with enumeration on a 3 × 3 torus:

    >>> from ebmppl.discrete import ising, enumerate_log_partition
    >>> exact = ising_log_partition(3, 3, beta=0.4, field=0.1)
    >>> bool(abs(exact - float(enumerate_log_partition(ising(lattice=(3, 3), beta=0.4, field=0.1)))) < 1e-4)
    True
    """
    L1, L2 = _check_side("L1", L1), _check_side("L2", L2)
    beta = float(beta)
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}.")
    rows, length = sorted((L1, L2))  # transfer along the longer side
    if rows > 13:
        raise ValueError(f"the transfer matrix of a {L1} × {L2} lattice has 2**{rows} rows; at most 2**13 fit. "
                         "Use AIS, or kaufman_log_partition for a torus in zero field.")
    s = 2.0 * ((np.arange(2**rows)[:, None] >> np.arange(rows)) & 1) - 1.0  # (2**rows, rows) column states
    J1 = np.asarray(lattice_couplings(rows, 1.0, periodic), np.float64)
    a = beta * (float(coupling) * 0.5 * np.einsum("si,ij,sj->s", s, J1, s) + float(field) * s.sum(1))
    if length == 1:
        return float(_logsumexp(a))
    log_m = beta * float(coupling) * (s @ s.T) + 0.5 * (a[:, None] + a[None, :])
    c = log_m.max()
    lam, vec = np.linalg.eigh(np.exp(log_m - c))
    top = lam[-1]  # Perron eigenvalue: positive and largest in modulus
    ratio = lam / top
    if periodic:
        total = np.sum(ratio**length)
        return float(length * (c + np.log(top)) + np.log(total))
    cu = 0.5 * a.max()
    u = np.exp(0.5 * a - cu)
    total = np.sum((vec.T @ u) ** 2 * ratio ** (length - 1))
    return float(2 * cu + (length - 1) * (c + np.log(top)) + np.log(total))


def _logsumexp(v: np.ndarray) -> float:
    m = np.max(v)
    return float(m + np.log(np.sum(np.exp(v - m))))


def _log_prod_2cosh(y: np.ndarray) -> float:
    y = np.abs(y)
    return float(np.sum(y + np.log1p(np.exp(-2 * y))))


def _log_prod_2sinh(y: np.ndarray) -> tuple[float, float]:
    """``(sign, log|Π 2 sinh(y)|)``."""
    if np.any(y == 0):
        return 0.0, -np.inf
    ay = np.abs(y)
    return float(np.prod(np.sign(y))), float(np.sum(ay + np.log(-np.expm1(-2 * ay))))


def kaufman_log_partition(L1: int, L2: int, coupling: float = 1.0, beta: float = 1.0) -> float:
    """Kaufman's exact ``log Z`` of the zero-field Ising model on an ``L1 × L2`` torus (float64; any size).

    ``Z = ½ (2 sinh 2K)^{L1 L2 / 2} (Z₁ + Z₂ + Z₃ + Z₄)`` with ``K = βJ``,
    ``Z₁ = Π_{r<L2} 2 cosh(L1 γ_{2r+1} / 2)``, ``Z₂`` the same with ``sinh``,
    ``Z₃``, ``Z₄`` with ``γ_{2r}``; ``cosh γ_k = cosh 2K coth 2K - cos(π k / L2)``
    and ``γ₀ = 2K + log tanh K`` (B. Kaufman, Phys. Rev. 76, 1232 (1949); in
    the form of P. D. Beale, Phys. Rev. Lett. 76, 78 (1996)). Same conventions
    as :func:`ising_log_partition` with ``periodic=True, field=0``, for sides ≥ 3
    (a periodic side of 2 doubles the bond, which the formula does not).

    Examples
    --------
    >>> round(kaufman_log_partition(4, 4, beta=0.3), 8) == round(ising_log_partition(4, 4, beta=0.3), 8)
    True
    >>> round(kaufman_log_partition(64, 64, beta=0.44) / (64 * 64), 4)   # per spin; Onsager's infinite lattice: 0.9287
    0.9289
    """
    m, n = _check_side("L1", L1), _check_side("L2", L2)
    if m < 3 or n < 3:
        raise ValueError(f"kaufman_log_partition needs sides ≥ 3 (got {m} × {n}); use ising_log_partition.")
    K = float(beta) * float(coupling)
    if not (math.isfinite(K) and K > 0):
        raise ValueError(f"beta * coupling must be finite and > 0 (ferromagnetic), got {K!r}.")
    k = np.arange(2 * n)
    cosh_g = np.cosh(2 * K) / np.tanh(2 * K) - np.cos(np.pi * k / n)
    gamma = np.arccosh(cosh_g)
    gamma[0] = 2 * K + np.log(np.tanh(K))
    odd, even = gamma[1::2], gamma[0::2]
    terms = [(1.0, _log_prod_2cosh(m * odd / 2)), _log_prod_2sinh(m * odd / 2),
             (1.0, _log_prod_2cosh(m * even / 2)), _log_prod_2sinh(m * even / 2)]
    big = max(t[1] for t in terms)
    total = sum(sign * np.exp(log - big) for sign, log in terms)
    return float(-np.log(2.0) + 0.5 * m * n * np.log(2 * np.sinh(2 * K)) + big + np.log(total))
