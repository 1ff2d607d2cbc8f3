"""Built-in discrete energies: Ising, Potts, restricted Boltzmann machines and an MLP on discrete inputs.

Each builder returns an :class:`~ebmppl.Energy` whose ``support`` is
discrete (:data:`~ebmppl.support.SPINS`, :data:`~ebmppl.support.BINARY` or
``Categorical(K)``) and whose parameters are learnable pytrees. Sign
conventions (temperature ``T = 1``, ``p(x) ∝ exp(-E(x))``):

* :func:`ising`: ``E(x) = -β (½ xᵀ J x + hᵀ x)`` on ``x ∈ {-1, 1}ⁿ`` (or
  ``{0, 1}ⁿ``), ``params = {"couplings": J, "field": h}``;
* :func:`potts`: ``E(x) = -β (½ Σᵢⱼ Jᵢⱼ [xᵢ = xⱼ] + Σᵢ hᵢ[xᵢ])`` on one-hot
  rows, ``params = {"couplings": J, "field": h}``;
* :func:`rbm`: the free energy ``F(v) = -bᵀv - Σⱼ softplus(cⱼ + (Wᵀv)ⱼ)``,
  ``params`` an :class:`RBM` ``(W, b, c)``.

``½ xᵀ J x`` with a symmetric, zero-diagonal ``J`` is ``Σ_{i<j} Jᵢⱼ xᵢ xⱼ``:
every bond counts once. On a lattice, ``Jᵢⱼ = coupling`` for nearest
neighbours (:func:`lattice_couplings`), so ``coupling > 0`` is
ferromagnetic. The energies symmetrise ``J`` and ignore its diagonal, so a
gradient step on ``J`` keeps it a valid coupling matrix in effect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ebmppl.energy import Energy
from ebmppl.support import BINARY, SPINS, Categorical, Support

__all__ = ["ising", "potts", "lattice_couplings", "RBM", "rbm", "rbm_joint", "discrete_mlp", "IsingFn", "PottsFn"]


# ------------------------------------------------------------------ helpers
def _lattice_shape(lattice: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(lattice, (int, np.integer)) and not isinstance(lattice, bool):
        lattice = (int(lattice),)
    try:
        shape = tuple(int(s) for s in lattice)
        if any(isinstance(s, (bool, float)) for s in lattice):
            raise TypeError
    except TypeError:
        raise TypeError(f"lattice must be an int L or a tuple of ints (L1, L2), got {lattice!r}.") from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"lattice must have positive side lengths, got {lattice!r}.")
    return shape


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_couplings(couplings: Any, name: str = "couplings") -> jax.Array:
    """``couplings`` as a float (n, n) array, symmetric with zero diagonal, else a ValueError naming the fix."""
    J = jnp.asarray(couplings)
    if not jnp.issubdtype(J.dtype, jnp.floating):
        J = J.astype(jnp.result_type(float))
    if J.ndim != 2 or J.shape[0] != J.shape[1] or J.shape[0] < 1:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {J.shape}.")
    if _is_concrete(J):
        Jn = np.asarray(J, np.float64)
        if not np.all(np.isfinite(Jn)):
            raise ValueError(f"{name} contains NaN or inf.")
        scale = max(1.0, float(np.max(np.abs(Jn))))
        if not np.allclose(Jn, Jn.T, rtol=0.0, atol=1e-6 * scale):
            i, j = np.unravel_index(np.argmax(np.abs(Jn - Jn.T)), Jn.shape)
            triangular = not np.any(np.tril(Jn, -1)) or not np.any(np.triu(Jn, 1))
            fix = ("it holds each bond once (one triangle is zero): pass J + J.T, which keeps every bond's strength"
                   if triangular else "symmetrise it, e.g. 0.5 * (J + J.T) (each bond the mean of its two entries)")
            raise ValueError(
                f"{name} must be symmetric (J[i, j] = J[j, i], the bond between i and j); J[{i}, {j}] = {Jn[i, j]:g} "
                f"but J[{j}, {i}] = {Jn[j, i]:g}; {fix}."
            )
        if np.any(np.diag(Jn) != 0):
            i = int(np.argmax(np.abs(np.diag(Jn))))
            raise ValueError(
                f"{name} must have a zero diagonal (no self-couplings); J[{i}, {i}] = {Jn[i, i]:g}. A spin's "
                "self-coupling is a constant (x² = 1) and a bit's is a field (x² = x): remove it with "
                "J - jnp.diag(jnp.diag(J)) and put it into the field."
            )
    return J


def _check_field(field: Any, shape: tuple[int, ...], name: str = "field") -> jax.Array:
    h = jnp.asarray(field)
    if not jnp.issubdtype(h.dtype, jnp.floating):
        h = h.astype(jnp.result_type(float))
    try:
        h = jnp.broadcast_to(h, shape)
    except ValueError:
        raise ValueError(f"{name} has shape {h.shape}; pass a scalar or an array broadcastable to {shape}.") from None
    if _is_concrete(h) and not bool(jnp.all(jnp.isfinite(h))):
        raise ValueError(f"{name} contains NaN or inf.")
    return h


def _check_beta(beta: Any) -> float:
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise TypeError(f"beta must be a number (the inverse temperature), got {beta!r}.") from None
    if not (math.isfinite(b) and b > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}.")
    return b


def _effective(J: jax.Array) -> jax.Array:
    """The coupling actually used: symmetrised, diagonal removed (a no-op on a valid J; keeps gradient steps valid)."""
    return 0.5 * (J + J.T) * (1.0 - jnp.eye(J.shape[0], dtype=J.dtype))


def lattice_couplings(
    shape: int | Sequence[int], coupling: float = 1.0, periodic: bool = True
) -> jax.Array:
    """Nearest-neighbour couplings of a hypercubic lattice: a symmetric ``(n, n)`` matrix, ``n = prod(shape)``.

    Site ``(i, j)`` of an ``(L1, L2)`` lattice is coordinate ``i * L2 + j`` of
    the flat state (C order). ``J[a, b] = coupling`` for every bond ``a ~ b``.
    With ``periodic=True`` the lattice is a torus; a side of length 2 then
    bonds the same pair twice (``J = 2 · coupling``: both ways round), and a
    side of length 1 has no bonds.

    Parameters
    ----------
    shape
        ``L`` (a chain or ring) or ``(L1, L2)`` (any number of axes works).
    coupling
        The bond strength ``J`` (``> 0``: ferromagnetic).
    periodic
        Wrap around (a torus) or not (open boundaries).

    Examples
    --------
    >>> J = lattice_couplings((3, 3))
    >>> J.shape, float(J.sum()) / 2   # 18 bonds on a 3x3 torus
    ((9, 9), 18.0)
    >>> float(lattice_couplings(4, periodic=False).sum()) / 2   # 3 bonds on an open chain of 4
    3.0
    """
    dims = _lattice_shape(shape)
    n = math.prod(dims)
    index = np.arange(n).reshape(dims)
    J = np.zeros((n, n))
    for axis, length in enumerate(dims):
        if length == 1:
            continue
        neighbour = np.roll(index, -1, axis=axis)
        a, b = index, neighbour
        if not periodic:  # drop the bonds that wrap
            keep = [slice(None)] * len(dims)
            keep[axis] = slice(0, length - 1)
            a, b = index[tuple(keep)], neighbour[tuple(keep)]
        np.add.at(J, (a.ravel(), b.ravel()), 1.0)
        np.add.at(J, (b.ravel(), a.ravel()), 1.0)
    return jnp.asarray(J * float(coupling), jnp.result_type(float))


# --------------------------------------------------------------------- Ising
class IsingFn(eqx.Module):
    """``energy_fn`` of :func:`ising`: ``E(x) = -β (½ xᵀ J x + hᵀ x)`` with ``params = {"couplings", "field"}``.

    ``lattice`` and ``periodic`` record the lattice the couplings were built
    on (``None`` for arbitrary couplings); they are not used in the energy.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> fn = IsingFn(0.5)
    >>> float(fn({"couplings": jnp.array([[0.0, 1.0], [1.0, 0.0]]), "field": jnp.zeros(2)}, jnp.ones(2)))
    -0.5
    """

    beta: float = eqx.field(static=True)
    lattice: tuple[int, ...] | None = eqx.field(static=True, default=None)
    periodic: bool = eqx.field(static=True, default=True)

    def __call__(self, params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        J = _effective(params["couplings"])
        x = x.reshape(-1)
        return -self.beta * (0.5 * x @ (J @ x) + params["field"] @ x)


def ising(
    couplings: Any = None,
    *,
    lattice: int | Sequence[int] | None = None,
    coupling: float = 1.0,
    field: float | jax.Array = 0.0,
    beta: float = 1.0,
    periodic: bool = True,
    spins: bool = True,
) -> Energy:
    """An Ising model (or, with ``spins=False``, a fully visible Boltzmann machine) as an :class:`~ebmppl.Energy`.

    ``E(x) = -β (½ xᵀ J x + hᵀ x) = -β (Σ_{i<j} Jᵢⱼ xᵢ xⱼ + Σᵢ hᵢ xᵢ)`` on
    ``x ∈ {-1, +1}ⁿ`` (support :data:`~ebmppl.support.SPINS`) or ``x ∈ {0, 1}ⁿ``
    (``spins=False``, :data:`~ebmppl.support.BINARY`); ``p(x) ∝ exp(-E(x))``
    (``T = 1``; ``β`` is the inverse temperature). The state is flat,
    ``event_shape = (n,)``; lattice site ``(i, j)`` is coordinate ``i * L2 + j``.

    ``params = {"couplings": J, "field": h}`` (``J`` ``(n, n)`` symmetric with
    zero diagonal, ``h`` ``(n,)``) are learnable; ``β`` is a fixed multiplier.
    The energy uses ``½ (J + Jᵀ)`` without its diagonal, so updated
    parameters never need re-symmetrising.

    Parameters
    ----------
    couplings
        An ``(n, n)`` coupling matrix, or ``None`` to build one on ``lattice``.
    lattice
        ``L`` (a ring) or ``(L1, L2)``: nearest-neighbour bonds of strength
        ``coupling`` (:func:`lattice_couplings`). Give ``couplings`` or ``lattice``, not both.
    coupling
        Bond strength on the lattice (``> 0`` ferromagnetic).
    field
        ``h``, a scalar or an ``(n,)`` array.
    beta
        Inverse temperature ``β > 0``.
    periodic
        Torus (default) or open boundaries, on a lattice.
    spins
        ``±1`` spins (default) or ``{0, 1}`` bits.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ebmppl.discrete import ising
    >>> e = ising(lattice=(3, 3), beta=0.4)
    >>> e.event_shape, e.support
    ((9,), Binary(low=-1.0, high=1.0))
    >>> round(float(e.energy(jnp.ones(9))), 4)   # 18 aligned bonds: -0.4 * 18
    -7.2
    >>> chain = ising(jnp.array([[0.0, 1.0], [1.0, 0.0]]), field=0.5)
    >>> chain.energy(jnp.array([[1.0, 1.0], [1.0, -1.0]])).tolist()   # -(1 + 1), -(-1 + 0)
    [-2.0, 1.0]
    >>> ising(jnp.array([[0.0, 1.0], [2.0, 0.0]]))
    Traceback (most recent call last):
    ...
    ValueError: couplings must be symmetric (J[i, j] = J[j, i], the bond between i and j); ...
    """
    beta = _check_beta(beta)
    if (couplings is None) == (lattice is None):
        raise ValueError("ising() takes either couplings (an (n, n) matrix) or lattice (L or (L1, L2)), "
                         f"exactly one; got couplings={'None' if couplings is None else 'an array'}, "
                         f"lattice={lattice!r}.")
    shape = None
    if lattice is not None:
        shape = _lattice_shape(lattice)
        J = lattice_couplings(shape, coupling, periodic)
    else:
        J = _check_couplings(couplings)
    n = J.shape[0]
    h = _check_field(field, (n,))
    fn = IsingFn(beta, shape, bool(periodic))
    return Energy(fn, {"couplings": J, "field": h}, event_shape=(n,), support=SPINS if spins else BINARY)


# --------------------------------------------------------------------- Potts
class PottsFn(eqx.Module):
    """``energy_fn`` of :func:`potts`: ``-β (½ Σᵢⱼ Jᵢⱼ xᵢ·xⱼ + Σᵢ hᵢ·xᵢ)`` on one-hot rows ``xᵢ``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> params = {"couplings": jnp.array([[0.0, 1.0], [1.0, 0.0]]), "field": jnp.zeros((2, 3))}
    >>> float(PottsFn(1.0)(params, jnp.eye(3)[jnp.array([2, 2])]))   # the two variables agree
    -1.0
    """

    beta: float = eqx.field(static=True)
    lattice: tuple[int, ...] | None = eqx.field(static=True, default=None)
    periodic: bool = eqx.field(static=True, default=True)

    def __call__(self, params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        J = _effective(params["couplings"])
        return -self.beta * (0.5 * jnp.sum(x * (J @ x)) + jnp.sum(params["field"] * x))


def potts(
    num_states: int,
    couplings: Any = None,
    *,
    lattice: int | Sequence[int] | None = None,
    coupling: float = 1.0,
    field: float | jax.Array = 0.0,
    beta: float = 1.0,
    periodic: bool = True,
) -> Energy:
    """A ``K``-state Potts model over one-hot variables (support ``Categorical(K)``).

    ``E(x) = -β (Σ_{i<j} Jᵢⱼ [xᵢ = xⱼ] + Σᵢ hᵢ[xᵢ])`` with ``[xᵢ = xⱼ] = xᵢ · xⱼ``
    for one-hot rows. ``event_shape = (n, K)``: row ``i`` is variable ``i``
    (lattice site ``(i, j)`` is row ``i * L2 + j``). ``params = {"couplings":
    J (n, n), "field": h (n, K)}``; a scalar or ``(K,)`` field is broadcast.
    ``K = 2`` is an Ising model with couplings ``J / 2`` (and a shifted energy).

    Parameters
    ----------
    num_states
        ``K ≥ 2``.
    couplings, lattice, coupling, beta, periodic
        As for :func:`ising`.
    field
        ``h``: a scalar, ``(K,)`` or ``(n, K)``: the bonus of state ``k`` at site ``i``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.discrete import potts
    >>> e = potts(3, lattice=4, beta=0.5)   # a ring of 4 three-state variables
    >>> e.event_shape, e.support
    ((4, 3), Categorical(num_categories=3))
    >>> x = jax.nn.one_hot(jnp.array([0, 0, 1, 2]), 3)   # one bond of 4 agrees
    >>> float(e.energy(x))
    -0.5
    """
    beta = _check_beta(beta)
    support = Categorical(num_states)
    k = support.num_categories
    if (couplings is None) == (lattice is None):
        raise ValueError("potts() takes either couplings (an (n, n) matrix) or lattice (L or (L1, L2)), exactly one.")
    shape = None
    if lattice is not None:
        shape = _lattice_shape(lattice)
        J = lattice_couplings(shape, coupling, periodic)
    else:
        J = _check_couplings(couplings)
    n = J.shape[0]
    h = _check_field(field, (n, k))
    return Energy(PottsFn(beta, shape, bool(periodic)), {"couplings": J, "field": h}, event_shape=(n, k),
                  support=support)


# ----------------------------------------------------------------------- RBM
class RBM(eqx.Module):
    """A restricted Boltzmann machine with binary ``{0, 1}`` visible ``v`` and hidden ``h`` units.

    Joint energy ``E(v, h) = -vᵀ W h - bᵀ v - cᵀ h``; summing out ``h`` gives the
    free energy ``F(v) = -bᵀ v - Σⱼ softplus(cⱼ + (Wᵀ v)ⱼ)`` with
    ``p(v) ∝ exp(-F(v))``. The conditionals factorise:
    ``p(hⱼ = 1 | v) = σ(hidden_logits(v))ⱼ``, ``p(vᵢ = 1 | h) = σ(visible_logits(h))ᵢ``.
    Every method takes leading batch axes.

    Attributes
    ----------
    W
        ``(num_visible, num_hidden)`` weights.
    b
        ``(num_visible,)`` visible bias.
    c
        ``(num_hidden,)`` hidden bias.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.discrete import RBM
    >>> r = RBM(jnp.ones((2, 1)), jnp.zeros(2), jnp.zeros(1))
    >>> v = jnp.array([1.0, 1.0])
    >>> r.hidden_logits(v).tolist(), r.joint_energy(v, jnp.array([1.0])).tolist()
    ([2.0], -2.0)
    >>> round(float(r.free_energy(v)), 4)   # -log(1 + e²)
    -2.1269
    """

    W: jax.Array
    b: jax.Array
    c: jax.Array

    def __init__(self, W: jax.Array, b: jax.Array | None = None, c: jax.Array | None = None):
        W = jnp.asarray(W)
        if W.ndim != 2:
            raise ValueError(f"W must be a (num_visible, num_hidden) matrix, got shape {W.shape}.")
        nv, nh = W.shape
        b = jnp.zeros(nv, W.dtype) if b is None else jnp.asarray(b, W.dtype)
        c = jnp.zeros(nh, W.dtype) if c is None else jnp.asarray(c, W.dtype)
        if b.shape != (nv,):
            raise ValueError(f"b (visible bias) must have shape ({nv},) to match W {W.shape}, got {b.shape}.")
        if c.shape != (nh,):
            raise ValueError(f"c (hidden bias) must have shape ({nh},) to match W {W.shape}, got {c.shape}.")
        self.W, self.b, self.c = W, b, c

    @property
    def num_visible(self) -> int:
        return self.W.shape[0]

    @property
    def num_hidden(self) -> int:
        return self.W.shape[1]

    def hidden_logits(self, v: jax.Array) -> jax.Array:
        """``c + Wᵀ v``: logits of ``p(h = 1 | v)``, shape ``(..., num_hidden)``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> r = RBM(jnp.array([[1.0, -1.0], [0.5, 0.0]]), jnp.array([0.1, 0.2]), jnp.array([0.3, -0.3]))
        >>> [round(v, 4) for v in r.hidden_logits(jnp.array([1.0, 1.0])).tolist()]
        [1.8, -1.3]
        """
        return v @ self.W + self.c

    def visible_logits(self, h: jax.Array) -> jax.Array:
        """``b + W h``: logits of ``p(v = 1 | h)``, shape ``(..., num_visible)``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> r = RBM(jnp.array([[1.0, -1.0], [0.5, 0.0]]), jnp.array([0.1, 0.2]), jnp.array([0.3, -0.3]))
        >>> [round(v, 4) for v in r.visible_logits(jnp.array([1.0, 0.0])).tolist()]
        [1.1, 0.7]
        """
        return h @ self.W.T + self.b

    def joint_energy(self, v: jax.Array, h: jax.Array) -> jax.Array:
        """``E(v, h) = -vᵀ W h - bᵀ v - cᵀ h``, shape ``(...)``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> r = RBM(jnp.array([[1.0, -1.0], [0.5, 0.0]]), jnp.array([0.1, 0.2]), jnp.array([0.3, -0.3]))
        >>> round(float(r.joint_energy(jnp.array([1.0, 0.0]), jnp.array([1.0, 0.0]))), 4)   # -(1 + 0.1 + 0.3)
        -1.4
        """
        return -(jnp.sum((v @ self.W) * h, axis=-1) + v @ self.b + h @ self.c)

    def free_energy(self, v: jax.Array) -> jax.Array:
        """``F(v) = -bᵀ v - Σⱼ softplus(cⱼ + (Wᵀ v)ⱼ)``, shape ``(...)``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> r = RBM(jnp.array([[1.0, -1.0], [0.5, 0.0]]), jnp.array([0.1, 0.2]), jnp.array([0.3, -0.3]))
        >>> r.free_energy(jnp.zeros((3, 2))).shape
        (3,)
        """
        return -(v @ self.b) - jnp.sum(jax.nn.softplus(self.hidden_logits(v)), axis=-1)

    def visible_free_energy(self, h: jax.Array) -> jax.Array:
        """The free energy of the hidden layer, visible summed out: ``-cᵀ h - Σᵢ softplus(bᵢ + (W h)ᵢ)``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> r = RBM(jnp.array([[1.0, -1.0], [0.5, 0.0]]), jnp.array([0.1, 0.2]), jnp.array([0.3, -0.3]))
        >>> r.visible_free_energy(jnp.zeros((4, 2))).shape
        (4,)
        """
        return -(h @ self.c) - jnp.sum(jax.nn.softplus(self.visible_logits(h)), axis=-1)


def _rbm_free_energy(rbm: RBM, v: jax.Array) -> jax.Array:
    return rbm.free_energy(v.reshape(-1))


def _rbm_joint_energy(rbm: RBM, x: jax.Array) -> jax.Array:
    nv = rbm.W.shape[0]
    return rbm.joint_energy(x[:nv], x[nv:])


def _as_rbm(model: Any, name: str = "rbm") -> RBM:
    if isinstance(model, RBM):
        return model
    if isinstance(model, Energy) and isinstance(model.params, RBM):
        return model.params
    raise TypeError(f"{name} must be an ebmppl.discrete.RBM or the Energy that rbm() returns, got "
                    f"{type(model).__name__}.")


def rbm(
    num_visible: int | RBM,
    num_hidden: int | None = None,
    *,
    key: jax.Array | None = None,
    scale: float = 0.01,
    event_shape: Sequence[int] | None = None,
) -> Energy:
    """A restricted Boltzmann machine's free energy ``F(v)`` as an :class:`~ebmppl.Energy` over ``{0, 1}`` visibles.

    ``params`` is the :class:`RBM` (``W ~ N(0, scale²)``, zero biases), so
    ``energy.params.hidden_logits(v)`` etc. give the conditionals a block Gibbs
    sampler needs, and the exact log Z is :func:`ebmppl.discrete.rbm_log_partition`.

    Parameters
    ----------
    num_visible
        Number of visible units, or an :class:`RBM` to wrap as it is.
    num_hidden
        Number of hidden units (not with an :class:`RBM`).
    key
        PRNG key of the initial weights.
    scale
        Standard deviation of the initial weights.
    event_shape
        Shape of one visible example (e.g. ``(8, 8)``; default ``(num_visible,)``); it is flattened.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.discrete import rbm
    >>> e = rbm(6, 3, key=jax.random.key(0))
    >>> e.event_shape, e.support, e.params.W.shape
    ((6,), Binary(low=0.0, high=1.0), (6, 3))
    >>> bool(jnp.allclose(e.energy(jnp.ones(6)), e.params.free_energy(jnp.ones(6))))
    True
    """
    if isinstance(num_visible, RBM):
        if num_hidden is not None:
            raise ValueError("rbm(model) takes the RBM's shapes from the model; drop num_hidden.")
        model = num_visible
    else:
        for name, value in (("num_visible", num_visible), ("num_hidden", num_hidden)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int ≥ 1, got {value!r}.")
        if key is None:
            raise TypeError("rbm(num_visible, num_hidden) needs key=jax.random.key(...) for the initial weights.")
        if not float(scale) >= 0:
            raise ValueError(f"scale must be ≥ 0, got {scale!r}.")
        W = float(scale) * jax.random.normal(key, (int(num_visible), int(num_hidden)), jnp.result_type(float))
        model = RBM(W)
    nv = model.num_visible
    shape = (nv,) if event_shape is None else tuple(int(s) for s in event_shape)
    if math.prod(shape) != nv:
        raise ValueError(f"event_shape {shape} has {math.prod(shape)} entries but the RBM has {nv} visible units.")
    return Energy(_rbm_free_energy, model, event_shape=shape, support=BINARY)


def rbm_joint(model: RBM | Energy) -> Energy:
    """The RBM's joint energy ``E(v, h)`` as an :class:`~ebmppl.Energy` over the concatenated ``x = (v, h)``.

    ``event_shape = (num_visible + num_hidden,)``, support
    :data:`~ebmppl.support.BINARY`, ``params`` the same :class:`RBM`: a
    sampler of ``x`` (e.g. block Gibbs) then samples ``v`` and ``h`` jointly.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.discrete import rbm, rbm_joint
    >>> joint = rbm_joint(rbm(4, 2, key=jax.random.key(0)))
    >>> joint.event_shape, joint.params.num_hidden
    ((6,), 2)
    """
    model = _as_rbm(model, "model")
    return Energy(_rbm_joint_energy, model, event_shape=(model.num_visible + model.num_hidden,), support=BINARY)


# ----------------------------------------------------------------- MLP
def discrete_mlp(
    event_shape: int | Sequence[int],
    support: Support = BINARY,
    hidden: Sequence[int] = (64, 64),
    *,
    key: jax.Array,
) -> Energy:
    """An MLP energy on discrete inputs (:class:`ebmppl.nn.MLPEnergy` on the flattened state).

    The state (bits, spins or one-hot rows) is read as a real vector, so the
    energy is differentiable in ``x``: what gradient-informed discrete
    samplers (Gibbs-with-Gradients, DMALA) need.

    Parameters
    ----------
    event_shape
        Shape of one example (``(..., K)`` for ``Categorical(K)``).
    support
        A discrete :class:`~ebmppl.support.Support` (default :data:`~ebmppl.support.BINARY`).
    hidden
        Hidden widths.
    key
        PRNG key of the initial weights.

    Examples
    --------
    >>> import jax
    >>> from ebmppl.discrete import discrete_mlp
    >>> from ebmppl.support import Categorical
    >>> e = discrete_mlp((5, 3), Categorical(3), (16,), key=jax.random.key(0))
    >>> e.support, e.energy(e.support.enumerate((5, 3))).shape
    (Categorical(num_categories=3), (243,))
    """
    from ebmppl.nn import MLPEnergy

    if not isinstance(support, Support) or not support.is_discrete:
        raise TypeError(f"support must be a discrete ebmppl.support.Support (BINARY, SPINS, Categorical(K)), "
                        f"got {support!r}; for real inputs use ebmppl.nn.MLPEnergy.")
    shape = (int(event_shape),) if isinstance(event_shape, (int, np.integer)) else tuple(int(s) for s in event_shape)
    net = MLPEnergy(math.prod(shape), tuple(hidden), key=key)
    return Energy.from_equinox(net, event_shape=shape, support=support)
