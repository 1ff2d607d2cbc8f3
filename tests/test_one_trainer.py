"""The one trainer (issue 16): objectives as configurations, hashing by value, one metrics definition, one guard.

Fast checks through the public API, fixed keys. The first test is the worked
example of the Design page ("how to add an objective"), verbatim.
"""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ebmppl
from ebmppl._deprecation import EbmpplDeprecationWarning
from ebmppl.buffer import replay_buffer
from ebmppl.jem import jem_hybrid, joint_energy, sample_conditional
from ebmppl.objectives import (
    METRICS,
    LossTerm,
    Objective,
    contrastive_divergence,
    denoising_score_matching,
    negative_chains,
    noise_contrastive_estimation,
    recovery_contrastive_divergence,
    sliced_score_matching,
)

QUIET = dict(progress_bar=False, health=False)


def test_design_page_objective():
    # ---- docs/design.md, "How to add an objective": its loss terms only -------------------------------
    import ebmppl
    from ebmppl.objectives import LossTerm, Objective, negative_chains

    class EnergyDifference(LossTerm):
        """mean E(x⁺) - mean E(x⁻): the maximum-likelihood gradient, written as a loss term."""

        def __call__(self, model, phases, extra):
            e_pos = model.energy(phases.positive).mean()   # x⁺: the data batch (the positive phase)
            e_neg = model.energy(phases.negative).mean()   # x⁻: chains of the negative phase (constants)
            return e_pos - e_neg, {"energy_pos": e_pos, "energy_neg": e_neg}

    energy = ebmppl.Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    trainer = Objective(
        "energy_difference", energy, optax.adam(0.05), EnergyDifference(),
        negative=negative_chains("mala", energy.dim, num_mcmc_steps=10, sampler_params={"step_size": 0.5}),
    )
    data = jnp.array([0.5, -0.5]) + 0.5 * jax.random.normal(jax.random.key(0), (2048, 2))
    result = ebmppl.fit(energy, jax.random.key(1), data, objective=trainer, num_steps=200, progress_bar=False)
    # ---------------------------------------------------------------------------------------------------
    # the maximum-likelihood location is the data mean; minibatch and chain noise move it by ~0.05
    np.testing.assert_allclose(np.asarray(result.energy.params), np.asarray(data.mean(0)), atol=0.15)
    assert set(METRICS) <= set(result.history) and result.history["finite"].all()
    assert np.isnan(result.history["energy_noise"]).sum() == 0  # the replay buffer's noise probe


def _energy():
    return ebmppl.Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))


def _joint():
    net = eqx.nn.MLP(2, 3, 8, 1, activation=jax.nn.silu, key=jax.random.key(0))
    return joint_energy(net, event_shape=(2,))


def test_trainers_built_alike_are_equal_and_hash_alike():
    energy, opt, chains = _energy(), optax.adam(1e-2), replay_buffer(64)
    build = lambda **o: contrastive_divergence(energy, opt, sampler="mala", chain_init=chains,  # noqa: E731
                                               num_mcmc_steps=3, **o)
    a, b = build(alpha=0.1), build(alpha=0.1)
    assert a is not b and a == b and hash(a) == hash(b)
    assert a != build(alpha=0.2) and a != build(alpha=0.1, sampler_params={"step_size": 0.05})
    # the defaults (replay buffer, langevin) are values too
    assert contrastive_divergence(energy, opt) == contrastive_divergence(energy, opt)
    for make in (lambda: denoising_score_matching(energy, opt, sigma=0.2), lambda: sliced_score_matching(energy, opt),
                 lambda: noise_contrastive_estimation(energy, opt, noise_scale=2.0),
                 lambda: recovery_contrastive_divergence(energy, opt, num_mcmc_steps=2)):
        assert make() == make() and hash(make()) == hash(make())
    # the trained energy's parameters are not part of the value: another starting point, the same trainer
    assert contrastive_divergence(energy.with_params(jnp.ones(2)), opt) == contrastive_divergence(energy, opt)


@pytest.mark.usefixtures("without_persistent_cache")  # a disk-cache hit skips the backend compile too
def test_equal_trainers_reuse_the_compiled_steps_of_fit():
    energy, opt, chains = _energy(), optax.adam(1e-2), replay_buffer(64)
    data = jax.random.normal(jax.random.key(0), (256, 2))

    def run():
        trainer = contrastive_divergence(energy, opt, sampler="mala", chain_init=chains, num_mcmc_steps=2)
        return ebmppl.fit(energy, jax.random.key(1), data, objective=trainer, num_steps=20, chunk_size=5, **QUIET)

    compiles = []
    backend = "/jax/core/compile/backend_compile_duration"
    def listen(name, *args, **kwargs):
        if name == backend:
            compiles.append(name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        first = run()
        before = len(compiles)
        second = run()  # a new trainer object, equal to the first: nothing of the training loop compiles again
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert before > 0 and len(compiles) == before
    np.testing.assert_array_equal(np.asarray(first.state.params), np.asarray(second.state.params))


def _configurations():
    energy, opt, joint = _energy(), optax.adam(1e-2), _joint()
    x = jax.random.uniform(jax.random.key(0), (8, 2), minval=-1.0, maxval=1.0)
    mask = jnp.array([[True, False]] * 8)
    labels = jnp.arange(8, dtype=jnp.int32) % 3
    return {
        "cd": (contrastive_divergence(energy, opt, sampler="mala", num_mcmc_steps=2, target_acceptance=0.6), x,
               energy.params),
        "recovery_cd": (recovery_contrastive_divergence(energy, opt, sampler="mala", num_mcmc_steps=2), (x, mask),
                        energy.params),
        "jem": (jem_hybrid(joint, opt, num_mcmc_steps=2), (x, labels), joint.energy.params),
        "jem_ce_only": (jem_hybrid(joint, opt, num_mcmc_steps=2, generative_weight=0.0), (x, labels),
                        joint.energy.params),
        "dsm": (denoising_score_matching(energy, opt), x, energy.params),
        "ssm": (sliced_score_matching(energy, opt), x, energy.params),
        "nce": (noise_contrastive_estimation(energy, opt), x, energy.params),
    }


@pytest.fixture(scope="module")
def stepped():
    """Per configuration: the initial state, one step on a good batch and one on a batch with a NaN (one compile)."""
    out = {}
    for name, (trainer, batch, params) in _configurations().items():
        state = trainer.init(jax.random.key(0), params)
        step = jax.jit(trainer.step)
        poison = lambda a: a.at[0, 0].set(jnp.nan) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
        out[name] = (state, step(state, batch), step(state, jax.tree.map(poison, batch)))
    return out


def test_metrics_of_every_configuration_come_from_one_definition(stepped):
    keys = {}
    for name, (_, (_, metrics), _) in stepped.items():
        keys[name] = set(metrics)
        assert set(METRICS) <= keys[name], name
        assert bool(metrics["finite"]), name
    with_chains = set(METRICS) | {"step_size"}
    assert keys["cd"] == keys["recovery_cd"] == with_chains
    assert keys["jem"] == keys["jem_ce_only"] == with_chains | {"cross_entropy", "accuracy"}
    assert keys["dsm"] == keys["ssm"] == keys["nce"] == set(METRICS)


def test_guard_keeps_the_state_on_nan_for_every_configuration(stepped):
    for name, (state, _, (new, metrics)) in stepped.items():
        assert not bool(metrics["finite"]), name
        for old_leaf, new_leaf in zip(jax.tree.leaves((state.params, state.opt_state, state.buffer)),
                                      jax.tree.leaves((new.params, new.opt_state, new.buffer)), strict=True):
            np.testing.assert_array_equal(np.asarray(old_leaf), np.asarray(new_leaf), err_msg=name)
        assert int(new.step) == 1, name  # key and step move on, so the driver sees where it failed


def test_fit_takes_the_key_second_and_the_old_form_still_works():
    energy, data = _energy(), jax.random.normal(jax.random.key(0), (128, 2)) + 1.0
    opts = dict(num_steps=10, chunk_size=5, sampler_params={"step_size": 0.05, "noise_scale": 0.3}, **QUIET)
    new = ebmppl.fit(energy, jax.random.key(1), data, **opts)
    keywords = ebmppl.fit(energy, data=data, key=jax.random.key(1), **opts)
    with pytest.warns(EbmpplDeprecationWarning, match=r"fit\(energy, key, data\)"):
        old = ebmppl.fit(energy, data, key=jax.random.key(1), **opts)
    for other in (keywords, old):
        np.testing.assert_array_equal(np.asarray(new.energy.params), np.asarray(other.energy.params))
    with pytest.raises(TypeError, match="the other way round"):
        ebmppl.fit(energy, data, jax.random.key(1), **opts)
    with pytest.raises(TypeError, match="key twice"):
        ebmppl.fit(energy, jax.random.key(1), data, key=jax.random.key(1), **opts)


def test_recovery_steps_is_num_mcmc_steps_deprecated():
    energy, opt = _energy(), optax.adam(1e-2)
    with pytest.warns(EbmpplDeprecationWarning, match="recovery_steps= is deprecated; use num_mcmc_steps="):
        old = recovery_contrastive_divergence(energy, opt, num_mcmc_steps=3, recovery_steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EbmpplDeprecationWarning)
        assert recovery_contrastive_divergence(energy, opt, num_mcmc_steps=3) == old


def test_sample_conditional_takes_the_key_second():
    joint = _joint()
    x = jax.random.uniform(jax.random.key(0), (64, 2), minval=-1.0, maxval=1.0)
    opts = dict(num_samples=4, reference=x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ebmppl.jem.OutOfRangeWarning)
        new = sample_conditional(joint, jax.random.key(3), joint.energy.params, 1, num_mcmc_steps=5, **opts)
        with pytest.warns(EbmpplDeprecationWarning):
            old = sample_conditional(joint, joint.energy.params, 1, jax.random.key(3), num_mcmc_steps=5, **opts)
        with pytest.warns(EbmpplDeprecationWarning, match="num_steps= is deprecated"):
            renamed = sample_conditional(joint, jax.random.key(3), joint.energy.params, 1, num_steps=5, **opts)
    np.testing.assert_array_equal(np.asarray(new), np.asarray(old))
    np.testing.assert_array_equal(np.asarray(new), np.asarray(renamed))


def test_negative_sampling_lives_in_the_inference_layer():
    from ebmppl import objectives
    from ebmppl.samplers import negatives

    assert objectives.sample_negatives is negatives.sample_negatives
    assert objectives.kernel_parameters is negatives.kernel_parameters
    recovery_source = open(ebmppl.objectives.recovery.__file__).read()
    imports = [line for line in recovery_source.splitlines() if line.startswith(("from", "import"))]
    assert not any("conditional" in line for line in imports)


def test_a_loss_term_can_train_its_own_parameters():
    class Shifted(LossTerm):
        """(E(x⁺) - b)²: a toy term with an extra trained parameter b."""

        def extra_params(self):
            return {"b": jnp.zeros(())}

        def __call__(self, model, phases, extra):
            return jnp.mean((model.energy(phases.positive) - extra["b"]) ** 2), {}

    energy = _energy()
    trainer = Objective("shifted", energy, optax.sgd(0.1), Shifted())
    state = trainer.init(jax.random.key(0), energy.params)
    assert sorted(state.params) == ["b", "energy"] and trainer.energy_params(state.params).shape == (2,)
    result = ebmppl.fit(energy, jax.random.key(1), jnp.ones((32, 2)), objective=trainer, num_steps=50, **QUIET)
    assert result.energy.params.shape == (2,) and bool(result.history["finite"].all())
