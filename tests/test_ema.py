"""Parameter EMA (ebmppl.ema.with_ema) and fit(ema=...): arithmetic, Optax composition, results, checkpoints."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ebmppl
from ebmppl import Energy, fit
from ebmppl.ema import EmaState, ema_params, has_ema, with_ema
from ebmppl.objectives import contrastive_divergence

LANGEVIN = {"step_size": 0.05, "noise_scale": 0.3}  # given: recipe "none", the energy's params are the trained ones


def _energy() -> Energy:
    return Energy(lambda p, x: 0.5 * jnp.sum(((x - p["m"]) * jnp.exp(p["s"])) ** 2),
                  {"m": jnp.zeros(2), "s": jnp.zeros(2)}, event_shape=(2,))


@pytest.fixture(scope="module")
def data():
    return 1.5 + 0.7 * jax.random.normal(jax.random.key(0), (256, 2))


def _run(optimizer, grads, params):
    """Apply ``grads`` one by one; the parameters after each update and the final state."""
    state, path = optimizer.init(params), []
    update = jax.jit(optimizer.update)
    for g in grads:
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
        path.append(np.asarray(params, np.float64))
    return np.stack(path), state


# ------------------------------------------------------------------------------------------- arithmetic
@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9])
def test_ema_matches_hand_computation(decay):
    grads = jax.random.normal(jax.random.key(1), (12, 3))
    params0 = jnp.array([1.0, -2.0, 0.5])
    path, state = _run(with_ema(optax.sgd(0.3), decay, debias=False), grads, params0)
    expected = np.asarray(params0, np.float64)
    for theta in path:  # the classic average, started at the initial parameters
        expected = decay * expected + (1 - decay) * theta
    np.testing.assert_allclose(np.asarray(ema_params(state)), expected, rtol=1e-5, atol=1e-6)
    assert int(state.count) == len(grads)


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.999])
def test_debiased_ema_is_the_bias_corrected_average_started_at_zero(decay):
    grads = jax.random.normal(jax.random.key(2), (15, 3))
    path, state = _run(with_ema(optax.adam(0.1), decay), grads, jnp.zeros(3))
    m = np.zeros(3)
    for theta in path:
        m = decay * m + (1 - decay) * theta
    np.testing.assert_allclose(np.asarray(ema_params(state)), m / (1 - decay**len(path)), rtol=2e-5, atol=1e-6)
    # the first average is exactly the first iterate (the starting parameters carry no weight)
    _, first = _run(with_ema(optax.adam(0.1), decay), grads[:1], jnp.zeros(3))
    assert np.array_equal(np.asarray(ema_params(first)), path[0].astype(np.float32))


def test_updates_are_the_inner_optimizers_and_compose_with_optax():
    inner = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(optax.linear_schedule(0.1, 0.01, 10)))
    grads = jax.random.normal(jax.random.key(3), (10, 4))
    path_plain, _ = _run(inner, grads, jnp.ones(4))
    path_ema, state = _run(with_ema(inner, 0.9), grads, jnp.ones(4))
    assert np.array_equal(path_plain, path_ema)  # training is unchanged by the wrapper
    assert isinstance(state, EmaState) and has_ema(state) and not has_ema(inner.init(jnp.ones(4)))

    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    labels = {"a": "slow", "b": "fast"}
    grads = [{"a": g[:2], "b": g[2:]} for g in jax.random.normal(jax.random.key(4), (6, 5))]

    def run(opt):
        p, state = params, opt.init(params)
        for g in grads:
            updates, state = opt.update(g, state, p)
            p = optax.apply_updates(p, updates)
        return p, state

    transforms = {"slow": optax.sgd(0.1), "fast": optax.adam(0.1)}
    _, whole = run(with_ema(optax.multi_transform(transforms, labels), 0.8))
    p, part = run(optax.multi_transform({"slow": with_ema(optax.sgd(0.1), 0.8), "fast": optax.adam(0.1)}, labels))
    with pytest.raises(ValueError, match="params="):
        ema_params(part)  # the EMA covers "a" only
    mixed = ema_params(part, p)
    assert np.array_equal(mixed["a"], ema_params(whole)["a"]) and np.array_equal(mixed["b"], p["b"])


def test_update_needs_params_and_decay_is_validated():
    opt = with_ema(optax.sgd(0.1))
    with pytest.raises(ValueError, match="needs the parameters"):
        opt.update(jnp.ones(2), opt.init(jnp.ones(2)))
    for bad in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="decay"):
            with_ema(optax.sgd(0.1), bad)
    with pytest.raises(ValueError, match="no moving average"):
        ema_params(optax.sgd(0.1).init(jnp.ones(2)))


# ------------------------------------------------------------------------------------------- fit
def test_fit_rejects_bad_ema(data):
    for bad in (1.0, -0.5, 2.0):
        with pytest.raises(ValueError, match="ema"):
            fit(_energy(), jax.random.key(0), data, ema=bad, num_steps=10, progress_bar=False)
    with pytest.raises(TypeError, match="ema"):
        fit(_energy(), jax.random.key(0), data, ema=True, num_steps=10, progress_bar=False)
    trainer = contrastive_divergence(_energy(), optax.adam(1e-2), sampler_params=LANGEVIN)
    with pytest.raises(TypeError, match="ema applies to a named objective"):
        fit(_energy(), jax.random.key(0), data, objective=trainer, ema=0.9, num_steps=100, progress_bar=False)
    with pytest.raises(ValueError, match="already keeps a moving average"):
        fit(_energy(), jax.random.key(0), data, optimizer=with_ema(optax.adam(1e-2)), ema=0.9, num_steps=100,
            progress_bar=False, sampler_params=LANGEVIN)
    with warnings.catch_warnings():  # a decay reaching into the first half of the run is said aloud
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="lags the fit"):
            fit(_energy(), jax.random.key(0), data, ema=0.999, num_steps=100, progress_bar=False)


@pytest.fixture(scope="module")
def cd_runs(data):
    kw = dict(num_steps=60, chunk_size=20, progress_bar=False, optimizer=optax.adam(5e-2), sampler_params=LANGEVIN,
              health=False)
    with_avg = fit(_energy(), jax.random.key(1), data, ema=0.9, **kw)
    without = fit(_energy(), jax.random.key(1), data, **kw)
    return with_avg, without, kw


def test_fit_cd_result_uses_the_ema(cd_runs):
    result, plain, _ = cd_runs
    avg = ema_params(result.state.opt_state)
    for name in ("m", "s"):
        assert np.array_equal(result.energy.params[name], avg[name])
        assert np.array_equal(result.raw_energy.params[name], result.state.params[name])
        # training (its negatives and updates) follows the raw parameters: bit-identical to a run without EMA
        assert np.array_equal(result.state.params[name], plain.state.params[name])
    assert not np.array_equal(result.energy.params["m"], result.raw_energy.params["m"])
    assert plain.raw_energy is plain.energy and not has_ema(plain.state.opt_state)


def test_fit_detects_a_user_wrapped_optimizer(data):
    trainer = contrastive_divergence(_energy(), with_ema(optax.adam(5e-2), 0.9), sampler_params=LANGEVIN)
    result = fit(_energy(), jax.random.key(1), data, objective=trainer, num_steps=40, chunk_size=20,
                 progress_bar=False, health=False)
    assert np.array_equal(result.energy.params["m"], ema_params(result.state.opt_state)["m"])
    assert not np.array_equal(result.energy.params["m"], result.state.params["m"])


@pytest.mark.parametrize("objective", ["dsm", "nce"])
def test_fit_mcmc_free_objectives_use_the_ema(data, objective):
    result = fit(_energy(), jax.random.key(2), data, objective=objective, ema=0.8, num_steps=40, chunk_size=20,
                 optimizer=optax.adam(5e-2), progress_bar=False, health=False)
    avg = ema_params(result.state.opt_state)
    if objective == "nce":  # NCE trains log_c too: the energy's params are mapped out of the average
        assert set(avg) == {"energy", "log_c"}
        avg = avg["energy"]
    assert np.array_equal(result.energy.params["m"], avg["m"])
    assert not np.array_equal(result.energy.params["m"], result.raw_energy.params["m"])


def test_resume_with_ema_is_bit_identical(cd_runs, data, tmp_path):
    full, _, kw = cd_runs

    def interrupt(step, state, metrics):
        if step == 40:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_energy(), jax.random.key(1), data, ema=0.9, checkpoint_dir=tmp_path, checkpoint_every=20,
            callbacks=[interrupt], **kw)
    resumed = fit(_energy(), jax.random.key(1), data, ema=0.9, checkpoint_dir=tmp_path, checkpoint_every=20,
                  resume=True, **kw)
    assert int(resumed.state.step) == 60
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(full.state), strict=True):
        assert np.array_equal(jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a,
                              jax.random.key_data(b) if jnp.issubdtype(b.dtype, jax.dtypes.prng_key) else b)
    assert np.array_equal(resumed.energy.params["m"], full.energy.params["m"])
    # the checkpoint carries the average, and ebmppl.load of the folder reads the energy fit returned
    loaded = ebmppl.load(tmp_path, like=_energy())
    assert np.array_equal(loaded.params["m"], full.energy.params["m"])
