"""Supports, the Energy's support field, and the built-in discrete energies (issue 19).

Values are checked against hand-computed ones (numpy loops over bonds / one-hot rows),
bad input against its error messages.
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmppl import Energy
from ebmppl.discrete import RBM, discrete_mlp, ising, lattice_couplings, potts, rbm, rbm_joint
from ebmppl.support import BINARY, MAX_ENUMERATE, REAL, SPINS, Binary, Categorical, Real, Support


# ------------------------------------------------------------------ supports
def test_binary_enumerate_order_and_index_roundtrip():
    states = SPINS.enumerate((2, 2))
    assert states.shape == (16, 2, 2) and states.dtype == jnp.result_type(float)
    # state i: flat coordinate j is +1 where bit j of i is set
    for i in (0, 5, 15):
        bits = [(i >> j) & 1 for j in range(4)]
        assert states[i].reshape(-1).tolist() == [1.0 if b else -1.0 for b in bits]
    assert SPINS.to_index(states, (2, 2)).tolist() == list(range(16))
    assert len({tuple(s) for s in np.asarray(states).reshape(16, -1).tolist()}) == 16
    assert bool(jnp.all(SPINS.contains(states, (2, 2))))
    assert SPINS.first_state((2, 2)).tolist() == states[0].tolist()


def test_categorical_enumerate_order_and_index_roundtrip():
    three = Categorical(3)
    states = three.enumerate((3, 3))
    assert states.shape == (27, 3, 3)
    digits = np.asarray(jnp.argmax(states, -1))
    expected = np.array([[(i // 3**j) % 3 for j in range(3)] for i in range(27)])
    np.testing.assert_array_equal(digits, expected)
    assert three.to_index(states, (3, 3)).tolist() == list(range(27))
    assert bool(jnp.all(three.contains(states, (3, 3))))
    assert three.num_states((2, 4, 3)) == 3**8


def test_contains():
    assert SPINS.contains(jnp.array([[1.0, -1.0], [0.0, 1.0], [1.0, 1.0]]), 2).tolist() == [True, False, True]
    assert BINARY.contains(jnp.array([[1.0, 0.0], [-1.0, 1.0]]), (2,)).tolist() == [True, False]
    x = jnp.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, 1.0]], [[0.5, 0.5], [0.0, 1.0]]])
    assert Categorical(2).contains(x, (2, 2)).tolist() == [True, False, False]
    assert REAL.contains(jnp.array([[0.0], [jnp.nan]]), 1).tolist() == [True, False]


def test_uniform_draws_are_states_and_uniform():
    key = jax.random.key(0)
    n = 20000
    draws = SPINS.uniform(key, (n,), (3,))
    assert draws.shape == (n, 3) and bool(jnp.all(SPINS.contains(draws, 3)))
    # each coordinate is +1 with probability 1/2: mean within 4 exact standard errors (1/sqrt(n))
    assert float(jnp.max(jnp.abs(draws.mean(0)))) < 4 / np.sqrt(n)
    cat = Categorical(4).uniform(key, (n,), (2, 4))
    assert bool(jnp.all(Categorical(4).contains(cat, (2, 4))))
    freq = cat.mean(0)  # 1/4 each, standard error sqrt(3/16 / n)
    assert float(jnp.max(jnp.abs(freq - 0.25))) < 4 * np.sqrt(3 / 16 / n)
    with pytest.raises(ValueError, match="typical_region"):
        REAL.uniform(key, (2,), (2,))


def test_supports_hashable_equal_and_static():
    assert SPINS == Binary(-1, 1) and hash(SPINS) == hash(Binary(-1.0, 1.0)) and SPINS != BINARY
    assert Categorical(3) == Categorical(3) and Categorical(3) != Categorical(4) and REAL == Real()
    assert jax.tree.leaves(SPINS) == [] and jax.tree.leaves(Categorical(3)) == []
    assert {SPINS: 1, BINARY: 2, Categorical(2): 3, REAL: 4}[Binary(0, 1)] == 2
    assert SPINS.is_discrete and Categorical(2).is_discrete and not REAL.is_discrete
    assert isinstance(SPINS, Support) and isinstance(SPINS, eqx.Module)
    assert SPINS.flip(jnp.array([1.0, -1.0])).tolist() == [-1.0, 1.0]
    assert Binary(2, 5).flip(jnp.array([2.0, 5.0])).tolist() == [5.0, 2.0]


def test_support_bad_input():
    with pytest.raises(ValueError, match="two different finite values"):
        Binary(1.0, 1.0)
    with pytest.raises(ValueError, match="≥ 2"):
        Categorical(1)
    with pytest.raises(TypeError, match="int"):
        Categorical(2.0)
    with pytest.raises(ValueError, match="event_shape must end in 3"):
        Categorical(3).enumerate((4, 2))
    with pytest.raises(ValueError, match="AIS") as err:
        BINARY.enumerate((23,))
    assert "ising_log_partition" in str(err.value) and "gibbs_with_gradients" in str(err.value)
    assert BINARY.num_states((22,)) == MAX_ENUMERATE
    with pytest.raises(TypeError, match="not discrete"):
        REAL.enumerate((2,))
    with pytest.raises(ValueError, match=r"data has 1 of 2 examples outside .* 2 \* x - 1"):
        SPINS.check(jnp.array([[1.0, 1.0], [0.0, 1.0]]), (2,), name="data")


# --------------------------------------------------------- Energy(support=)
def test_energy_support_field_and_updates_keep_it():
    fn = lambda p, x: -p * jnp.sum(x[:-1] * x[1:])  # noqa: E731
    e = Energy(fn, jnp.asarray(0.5), event_shape=(3,), support=SPINS)
    assert e.support == SPINS
    assert e.with_params(jnp.asarray(1.0)).support == SPINS
    assert e.with_temperature(2.0).support == SPINS
    assert e.with_sampler_settings(None).support == SPINS
    assert jax.jit(lambda en: en)(e).support == SPINS  # a static field: survives flatten/unflatten
    assert jax.tree.leaves(e) == jax.tree.leaves(Energy(fn, jnp.asarray(0.5), event_shape=(3,)))
    # integer states are read as floats on a discrete support; not on the real line
    assert float(e.energy(jnp.array([1, 1, -1]))) == float(e.energy(jnp.array([1.0, 1.0, -1.0])))
    with pytest.raises(TypeError, match="dtype"):
        Energy(fn, jnp.asarray(0.5), event_shape=(3,)).energy(jnp.array([1, 1, -1]))
    assert Energy(fn, 0.5, event_shape=(3,)).support == REAL
    net_energy = Energy.from_equinox(eqx.nn.Linear(3, "scalar", key=jax.random.key(0)), event_shape=(3,),
                                     support=BINARY)
    assert net_energy.support == BINARY


def test_energy_probe_default_is_a_state():
    seen = []

    def fn(p, x):
        seen.append(x)
        return -jnp.log(x[0] + 1.5)  # finite at -1 (state 0 of SPINS), not a check at zeros

    Energy(fn, None, event_shape=(2,), support=SPINS)
    assert np.asarray(seen[-1]).tolist() == [-1.0, -1.0]
    # on a one-hot support, zeros are not a state: the probe is category 0 everywhere
    Energy(lambda p, x: -jnp.log(jnp.sum(x)), None, event_shape=(2, 3), support=Categorical(3))


def test_energy_support_bad_input():
    with pytest.raises(TypeError, match="support must be an ebmppl.support.Support"):
        Energy(lambda p, x: jnp.sum(x), event_shape=(2,), support="spins")
    with pytest.raises(ValueError, match="event_shape must end in 4"):
        Energy(lambda p, x: jnp.sum(x), event_shape=(3,), support=Categorical(4))


# ----------------------------------------------------------------- energies
def _bonds(shape, periodic):
    """(a, b, multiplicity) bonds of a lattice, by loops (the reference for lattice_couplings)."""
    L1, L2 = shape
    out = []
    for i, j in itertools.product(range(L1), range(L2)):
        for di, dj in ((1, 0), (0, 1)):
            ii, jj = i + di, j + dj
            length = L1 if di else L2
            if length == 1:
                continue
            if (ii >= L1 or jj >= L2) and not periodic:
                continue
            out.append((i * L2 + j, (ii % L1) * L2 + jj % L2))
    return out


@pytest.mark.parametrize("shape,periodic", [((3, 4), True), ((3, 4), False), ((2, 3), True), ((1, 5), True)])
def test_lattice_couplings_match_bond_loops(shape, periodic):
    J = np.asarray(lattice_couplings(shape, 0.7, periodic))
    ref = np.zeros_like(J)
    for a, b in _bonds(shape, periodic):
        ref[a, b] += 0.7
        ref[b, a] += 0.7
    np.testing.assert_allclose(J, ref, rtol=1e-6)
    assert np.all(np.diag(J) == 0) and np.allclose(J, J.T)


def test_ising_energy_by_hand():
    rng = np.random.default_rng(0)
    shape = (3, 4)
    h = rng.normal(size=12)
    e = ising(lattice=shape, coupling=0.8, field=h, beta=0.6, periodic=False)
    xs = SPINS.uniform(jax.random.key(1), (5,), (12,))
    for x in np.asarray(xs):
        ref = -0.6 * (sum(0.8 * x[a] * x[b] for a, b in _bonds(shape, False)) + h @ x)
        np.testing.assert_allclose(float(e.energy(jnp.asarray(x))), ref, rtol=1e-5, atol=1e-5)
    assert e.params["couplings"].shape == (12, 12) and e.params["field"].shape == (12,)
    assert e.energy_fn.lattice == shape and e.energy_fn.beta == 0.6
    # {0, 1} version: a fully visible Boltzmann machine with the same formula
    b = ising(jnp.array([[0.0, 2.0], [2.0, 0.0]]), field=jnp.array([0.5, -1.0]), spins=False)
    assert b.support == BINARY
    assert b.energy(BINARY.enumerate(2)).tolist() == [0.0, -0.5, 1.0, -1.5]


def test_ising_gradient_keeps_couplings_symmetric():
    e = ising(lattice=(2, 3), beta=0.5)
    x = SPINS.uniform(jax.random.key(0), (), (6,))
    g = jax.grad(lambda p: e.with_params(p).energy(x))(e.params)
    G = np.asarray(g["couplings"])
    np.testing.assert_allclose(G, G.T, atol=1e-7)
    assert np.all(np.diag(G) == 0)
    np.testing.assert_allclose(np.asarray(g["field"]), -0.5 * np.asarray(x), rtol=1e-6)


def test_potts_energy_by_hand():
    rng = np.random.default_rng(1)
    n, k = 5, 3
    J = rng.normal(size=(n, n))
    J = np.triu(J, 1) + np.triu(J, 1).T
    h = rng.normal(size=(n, k))
    e = potts(k, jnp.asarray(J), field=jnp.asarray(h), beta=0.7)
    labels = rng.integers(0, k, size=(4, n))
    for lab in labels:
        ref = -0.7 * (sum(J[i, j] * (lab[i] == lab[j]) for i in range(n) for j in range(i + 1, n))
                      + sum(h[i, lab[i]] for i in range(n)))
        np.testing.assert_allclose(float(e.energy(jax.nn.one_hot(lab, k))), ref, rtol=1e-5, atol=1e-5)
    assert e.support == Categorical(3) and e.event_shape == (5, 3)
    assert potts(2, lattice=(2, 2)).params["field"].shape == (4, 2)


def test_rbm_methods_by_hand():
    rng = np.random.default_rng(2)
    W, b, c = rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=3)
    r = RBM(jnp.asarray(W), jnp.asarray(b), jnp.asarray(c))
    vs, hs = BINARY.enumerate(4), BINARY.enumerate(3)
    v, h = np.asarray(vs[11]), np.asarray(hs[5])
    np.testing.assert_allclose(float(r.joint_energy(vs[11], hs[5])), -(v @ W @ h + b @ v + c @ h), rtol=1e-5)
    np.testing.assert_allclose(r.hidden_logits(vs[11]), c + W.T @ v, rtol=1e-5)
    np.testing.assert_allclose(r.visible_logits(hs[5]), b + W @ h, rtol=1e-5)
    # free energies are the joint with the other layer summed out
    joint = -np.asarray(r.joint_energy(vs[:, None, :], hs[None, :, :]))  # (16, 8)
    np.testing.assert_allclose(-np.asarray(r.free_energy(vs)), np.log(np.exp(joint).sum(1)), rtol=1e-5)
    np.testing.assert_allclose(-np.asarray(r.visible_free_energy(hs)), np.log(np.exp(joint).sum(0)), rtol=1e-5)
    e = rbm(r)
    assert e.support == BINARY and e.event_shape == (4,) and e.params is r
    np.testing.assert_allclose(e.energy(vs), r.free_energy(vs), rtol=1e-6)
    j = rbm_joint(e)
    assert j.event_shape == (7,) and j.support == BINARY
    np.testing.assert_allclose(float(j.energy(jnp.concatenate([vs[11], hs[5]]))),
                               float(r.joint_energy(vs[11], hs[5])), rtol=1e-6)
    img = rbm(16, 2, key=jax.random.key(0), event_shape=(4, 4))
    assert img.event_shape == (4, 4) and img.energy(jnp.zeros((3, 4, 4))).shape == (3,)


def test_discrete_mlp():
    e = discrete_mlp(6, SPINS, (8,), key=jax.random.key(0))
    assert e.support == SPINS and e.event_shape == (6,)
    x = SPINS.uniform(jax.random.key(1), (3,), (6,))
    assert e.energy(x).shape == (3,) and jax.grad(lambda y: e.energy(y))(x[0]).shape == (6,)
    with pytest.raises(TypeError, match="discrete"):
        discrete_mlp(6, REAL, key=jax.random.key(0))


def test_energies_bad_input():
    with pytest.raises(ValueError, match="symmetric"):
        ising(jnp.array([[0.0, 1.0], [0.5, 0.0]]))
    with pytest.raises(ValueError, match="zero diagonal"):
        ising(jnp.array([[1.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="square"):
        ising(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="exactly one"):
        ising()
    with pytest.raises(ValueError, match="exactly one"):
        ising(jnp.zeros((4, 4)), lattice=(2, 2))
    with pytest.raises(ValueError, match="field has shape"):
        ising(lattice=(2, 2), field=jnp.ones(3))
    with pytest.raises(ValueError, match="beta"):
        ising(lattice=3, beta=0.0)
    with pytest.raises(TypeError, match="lattice"):
        ising(lattice=2.5)
    with pytest.raises(ValueError, match="field has shape"):
        potts(3, lattice=4, field=jnp.ones(2))
    with pytest.raises(ValueError, match="c \\(hidden bias\\)"):
        RBM(jnp.zeros((4, 3)), jnp.zeros(4), jnp.zeros(2))
    with pytest.raises(TypeError, match="key"):
        rbm(4, 3)
    with pytest.raises(ValueError, match="num_hidden"):
        rbm(4, 0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="event_shape"):
        rbm(4, 2, key=jax.random.key(0), event_shape=(3, 3))
    with pytest.raises(TypeError, match="RBM"):
        rbm_joint(ising(lattice=3))
