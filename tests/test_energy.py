"""The energy contract: conventions, adapters, validation messages."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmppl import Energy
from ebmppl.nn import ConvEnergy, MLPEnergy
from ebmppl.targets import TARGETS, banana, gaussian


def quadratic(params, x):
    return 0.5 * jnp.sum((x - params) ** 2)


def test_sign_conventions_and_temperature():
    e = Energy(quadratic, jnp.array([1.0, 2.0]), event_shape=(2,), temperature=2.0)
    x = jnp.array([[0.0, 0.0], [1.0, 2.0]])
    np.testing.assert_allclose(e.energy(x), [2.5, 0.0])
    np.testing.assert_allclose(e.logdensity(x), [-1.25, 0.0])
    np.testing.assert_allclose(e.potential(x), [1.25, 0.0])
    # score = -grad E / T = (params - x) / T
    np.testing.assert_allclose(e.score(x), [[0.5, 1.0], [0.0, 0.0]])
    assert e.energy(jnp.zeros((3, 4, 2))).shape == (3, 4)
    assert e.energy(jnp.zeros(2)).shape == ()


def test_energy_is_a_pytree_and_jits():
    e = Energy(quadratic, jnp.zeros(2), event_shape=(2,))
    f = jax.jit(lambda en, x: en.energy(x))
    assert float(f(e, jnp.ones(2))) == 1.0
    assert float(f(e.with_params(jnp.ones(2)), jnp.ones(2))) == 0.0
    grad = jax.grad(lambda en: en.energy(jnp.ones(2)))(e)
    np.testing.assert_allclose(grad.params, [-1.0, -1.0])


def test_equinox_adapter_matches_module():
    net = MLPEnergy(3, widths=(8, 8), key=jax.random.key(0))
    e = Energy.from_equinox(net, event_shape=(3,))
    x = jax.random.normal(jax.random.key(1), (5, 3))
    np.testing.assert_allclose(e.energy(x), jax.vmap(net)(x), rtol=1e-6)
    leaves = jax.tree.leaves(e.params)
    assert all(eqx.is_inexact_array(leaf) for leaf in leaves)


def test_conv_energy_with_spectral_norm():
    net = ConvEnergy(1, width=4, spectral_norm=True, key=jax.random.key(0))
    e = Energy.from_equinox(net, event_shape=(1, 8, 8))
    assert e.energy(jnp.zeros((2, 1, 8, 8))).shape == (2,)


def test_flax_adapters_match_modules():
    flax = pytest.importorskip("flax")
    from flax import linen, nnx

    class Lin(linen.Module):
        @linen.compact
        def __call__(self, x):
            return jnp.sum(linen.Dense(4)(x) ** 2)

    lin = Lin()
    variables = lin.init(jax.random.key(0), jnp.zeros(2))
    e = Energy.from_linen(lin, variables, event_shape=(2,))
    x = jax.random.normal(jax.random.key(1), (3, 2))
    np.testing.assert_allclose(e.energy(x), [lin.apply(variables, xi) for xi in x], rtol=1e-6)

    class NNX(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(2, 4, rngs=rngs)

        def __call__(self, x):
            return jnp.sum(self.dense(x) ** 2)

    module = NNX(nnx.Rngs(0))
    e = Energy.from_nnx(module, event_shape=(2,))
    np.testing.assert_allclose(e.energy(x), [module(xi) for xi in x], rtol=1e-6)
    assert flax is not None


@pytest.mark.parametrize(
    "kwargs, error, names",
    [
        ({"energy_fn": lambda p, x: x, "event_shape": (2,)}, ValueError, "energy_fn must return a scalar"),
        ({"energy_fn": lambda p, x: jnp.sum(x @ jnp.ones((3,))), "event_shape": (2,)}, ValueError, "event_shape"),
        ({"energy_fn": lambda p, x: jnp.sum(x).astype(jnp.int32), "event_shape": (2,)}, TypeError, "energy_fn must return a real"),
        ({"energy_fn": lambda p, x: jnp.log(jnp.sum(x**2)), "event_shape": (2,)}, ValueError, "probe"),
        ({"energy_fn": quadratic, "params": jnp.zeros(2), "event_shape": (2,), "temperature": 0.0}, ValueError, "temperature"),
        ({"energy_fn": "not a function", "event_shape": (2,)}, TypeError, "energy_fn must be callable"),
        ({"energy_fn": quadratic, "params": jnp.zeros(2), "event_shape": (-1,)}, ValueError, "event_shape"),
    ],
)
def test_validation_names_the_argument(kwargs, error, names):
    fn = kwargs.pop("energy_fn")
    with pytest.raises(error, match=names):
        Energy(fn, **kwargs)


def test_input_validation_on_call():
    e = Energy(quadratic, jnp.zeros(2), event_shape=(2,))
    with pytest.raises(ValueError, match="x has shape"):
        e.energy(jnp.zeros((4, 3)))
    with pytest.raises(TypeError, match="x has dtype"):
        e.energy(jnp.zeros((4, 2), dtype=jnp.int32))


def test_probe_point_can_be_chosen():
    e = Energy(lambda p, x: jnp.log(jnp.sum(x**2)), event_shape=(2,), probe=jnp.ones(2))
    assert np.isfinite(float(e.energy(jnp.ones(2))))


@pytest.mark.parametrize("name", sorted(n for n in TARGETS if TARGETS[n]().energy.dim == 2))
def test_targets_log_z_by_quadrature(name):
    """Each 2-D target's closed-form log Z and moments match a fine-grid quadrature."""
    t = TARGETS[name]()
    lim = 12.0 if name != "banana" else 20.0
    s = np.linspace(-lim, lim, 1201)
    grid = np.stack(np.meshgrid(s, s, indexing="ij"), -1).reshape(-1, 2)
    e = np.asarray(t.energy.energy(jnp.asarray(grid, jnp.float32)), np.float64)
    w = np.exp(-(e - e.min()))
    log_z = np.log(w.sum() * (s[1] - s[0]) ** 2) - e.min()
    assert abs(log_z - t.log_z) < 1e-3
    p = (w / w.sum())[:, None]
    np.testing.assert_allclose((p * grid).sum(0), t.mean, atol=2e-3)
    cov = ((grid - t.mean)[:, :, None] * (grid - t.mean)[:, None, :] * p[:, :, None]).sum(0)
    np.testing.assert_allclose(cov, t.cov, atol=5e-3)


def test_exact_target_samplers_match_moments():
    for t in (banana(1.0, 1.0), gaussian([1.0, 2.0], [[2.0, 0.3], [0.3, 0.5]])):
        x = np.asarray(t.sample(jax.random.key(0), 200_000))
        n = x.shape[0]
        se = np.sqrt(np.diag(t.cov) / n)
        assert np.all(np.abs(x.mean(0) - t.mean) < 4 * se)


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_conv_formulations_agree_in_value_and_gradients(spectral_norm):
    """im2col (the CPU default) and XLA's convolution are the same function: energies, ∇x and ∇θ agree."""
    nets = {impl: ConvEnergy(1, width=8, spectral_norm=spectral_norm, conv_impl=impl, key=jax.random.key(0))
            for impl in ("lax", "im2col")}
    x = jax.random.uniform(jax.random.key(1), (16, 1, 8, 8), minval=-1, maxval=1)
    energies = {k: Energy.from_equinox(n, event_shape=(1, 8, 8)) for k, n in nets.items()}
    # jitted: op by op, each of the networks' hundreds of operations would compile on its own (minutes on CPU)
    e = {k: jax.jit(lambda en: en.energy(x))(v) for k, v in energies.items()}
    s = {k: jax.jit(lambda en: en.score(x))(v) for k, v in energies.items()}
    g = {k: jax.jit(jax.grad(lambda p, en=v: en.with_params(p).energy(x).sum()))(v.params) for k, v in energies.items()}
    np.testing.assert_allclose(e["lax"], e["im2col"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s["lax"], s["im2col"], rtol=1e-4, atol=1e-6)
    for a, b in zip(jax.tree.leaves(g["lax"]), jax.tree.leaves(g["im2col"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # odd sizes, no padding, other strides: the patch arithmetic is general
    from ebmppl.nn import conv2d

    xi = jax.random.normal(jax.random.key(2), (3, 9, 7))
    w = jax.random.normal(jax.random.key(3), (5, 3, 3, 2))
    for stride, padding in ((1, 0), (2, 1), (3, 2)):
        conv = jax.jit(conv2d, static_argnames=("stride", "padding", "impl"))
        np.testing.assert_allclose(conv(xi, w, stride=stride, padding=padding, impl="lax"),
                                   conv(xi, w, stride=stride, padding=padding, impl="im2col"), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="impl"):
        conv2d(xi, w, impl="fft")
