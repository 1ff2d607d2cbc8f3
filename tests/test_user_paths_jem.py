"""User paths through JEM (issue 15, finding 7): OOD scores, class-conditional samples, metrics, data checks.

One small digits JEM (64-D MLP, 200 steps) is trained once per module and
reused. AUROC thresholds are 0.5 + 4 standard errors of the AUROC of two
samples from one distribution, sqrt((n1 + n2 + 1) / (12 n1 n2)) (Hanley &
McNeil), so a pass means the score separates the inputs, not luck.
"""

import pathlib
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ebmppl
from ebmppl import Energy, fit, sample, samplers
from ebmppl.jem import OutOfRangeWarning, check_in_range, jem_hybrid, joint_energy, sample_conditional
from ebmppl.latent import auroc, ood_scores
from ebmppl.targets import gaussian

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def _threshold(n_in: int, n_out: int) -> float:
    return 0.5 + 4.0 * np.sqrt((n_in + n_out + 1) / (12.0 * n_in * n_out))


@pytest.fixture(scope="module")
def digits_jem():
    pytest.importorskip("sklearn")
    from ebmppl.data import load_digits

    x, y = (jnp.asarray(a) for a in load_digits("train"))
    x_test, _ = load_digits("test")
    x, x_test = x.reshape(-1, 64), jnp.asarray(x_test).reshape(-1, 64)
    net = eqx.nn.MLP(64, 10, 64, 1, activation=jax.nn.silu, key=jax.random.key(1))
    joint = joint_energy(net, event_shape=(64,), data=x)  # records the data's range
    result = fit(joint.energy, (x, y), key=jax.random.key(2), num_steps=200, batch_size=64, progress_bar=False,
                 objective=jem_hybrid(joint, optax.adam(1e-3, b1=0.0), num_mcmc_steps=5), health=False)
    return joint, result, x, y, x_test


# ---------------------------------------------------------------- grad_norm OOD score
def test_grad_norm_score_ranks_far_points_higher_on_an_analytic_gaussian():
    target = gaussian(np.zeros(5), np.eye(5))
    inside, reference = target.sample(jax.random.key(0), 400), target.sample(jax.random.key(1), 400)
    outside = 3.0 * jax.random.normal(jax.random.key(2), (400, 5))  # N(0, 9)
    for kwargs in ({}, {"reference": reference}):
        a = auroc(ood_scores(target.energy, inside, "grad_norm", **kwargs),
                  ood_scores(target.energy, outside, "grad_norm", **kwargs))
        assert a > _threshold(400, 400), (kwargs.keys(), a)


def test_grad_norm_with_reference_detects_ood_inputs_of_a_trained_jem(digits_jem):
    joint, result, _, _, x_test = digits_jem
    energy = joint.energy.with_params(result.state.params)
    reference, inside = x_test[:180], x_test[180:]
    unusual = {"uniform noise in the data's box": jax.random.uniform(jax.random.key(3), (300, 64), minval=-1, maxval=1),
               "N(0, 9)": 3.0 * jax.random.normal(jax.random.key(4), (300, 64)),
               "negated digits": -inside}
    # one call scores everything (the reference's statistics are computed once)
    scores = ood_scores(energy, jnp.concatenate([inside, *unusual.values()]), "grad_norm", reference=reference)
    scores_in, start = scores[: inside.shape[0]], inside.shape[0]
    for name, x_out in unusual.items():
        a = auroc(scores_in, scores[start: start + x_out.shape[0]])
        start += x_out.shape[0]
        assert a > _threshold(inside.shape[0], x_out.shape[0]), (name, a)


def test_ood_scores_reference_is_validated():
    e = gaussian(np.zeros(2), np.eye(2)).energy
    with pytest.raises(ValueError, match="reference"):
        ood_scores(e, jnp.zeros((3, 2)), "grad_norm", reference=jnp.zeros((1, 2)))


# ---------------------------------------------------------------- class-conditional samples
def test_runaway_class_conditional_samples_are_flagged(digits_jem):
    joint, result, *_ = digits_jem
    params = result.state.params
    init = jax.random.uniform(jax.random.key(5), (16, 64), minval=-1, maxval=1)
    unclamped = samplers.langevin(step_size=10.0, noise_scale=0.005)
    out = sample(joint.conditional(params, 3), jax.random.key(6), sampler=unclamped, num_chains=16,
                 num_warmup=0, num_samples=1, thinning=100, adapt=False, progress_bar=False, init=init)
    drawn = out.positions[:, 0]
    # the finding: the classifier vouches for samples far outside the data ...
    assert float(jnp.abs(drawn).max()) > 2.0
    with pytest.warns(OutOfRangeWarning, match=r"range widths beyond.*clamp"):
        report = check_in_range(drawn, joint)  # ... the check does not
    assert report.fraction_outside > 0 and report.data_max_abs == 1.0


def test_sample_conditional_stays_in_range_by_default_and_warns_with_an_unclamped_sampler(digits_jem):
    joint, result, *_ = digits_jem
    params = result.state.params
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfRangeWarning)
        s = sample_conditional(joint, params, 7, jax.random.key(7), num_samples=16, num_steps=100)
    assert s.shape == (16, 64) and float(jnp.abs(s).max()) <= 1.0
    assert float((joint.predict(params, s).argmax(1) == 7).mean()) > 0.5
    with pytest.warns(OutOfRangeWarning, match="class-7 samples"):
        sample_conditional(joint, params, 7, jax.random.key(7), num_samples=16, num_steps=100,
                           sampler=samplers.langevin(step_size=10.0, noise_scale=0.005))


def test_sample_conditional_without_a_recorded_range_names_the_fix():
    joint = joint_energy(eqx.nn.Linear(2, 3, key=jax.random.key(0)), event_shape=(2,))
    with pytest.raises(ValueError, match=r"joint_energy\(\.\.\., data=x_train\)"):
        sample_conditional(joint, joint.energy.params, 0, jax.random.key(0))


# ---------------------------------------------------------------- training metrics and data checks
def test_energy_noise_is_reported_under_jem_hybrid(digits_jem):
    _, result, *_ = digits_jem
    noise = result.history["energy_noise"]
    assert noise.shape == (200,) and np.all(np.isfinite(noise))
    # noise in the box is where the model puts "nothing": above the data's energy at the end of training
    assert noise[-50:].mean() > result.history["energy_pos"][-50:].mean()


@pytest.mark.parametrize("shift", [10, -1])
def test_out_of_range_labels_are_a_value_error_before_training(shift):
    joint = joint_energy(eqx.nn.MLP(4, 3, 8, 1, key=jax.random.key(0)), event_shape=(4,))
    x = jax.random.normal(jax.random.key(1), (20, 4))
    y = jnp.arange(20, dtype=jnp.int32) % 3
    bad = y.at[:2].set(shift)
    trainer = jem_hybrid(joint, optax.adam(1e-3), num_mcmc_steps=2)
    with pytest.raises(ValueError, match=rf"labels .*\[0, 3\).*num_classes=3.*values: {shift}"):
        fit(joint.energy, (x, bad), key=jax.random.key(2), num_steps=5, objective=trainer, progress_bar=False)
    with pytest.raises(ValueError, match="labels"):  # an iterator of batches is checked batch by batch
        fit(joint.energy, [(x, bad), (x, y)], key=jax.random.key(2), num_steps=2, chunk_size=1,
            objective=trainer, progress_bar=False)


def test_cd_with_labelled_data_names_the_fix():
    e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    x, y = jnp.zeros((16, 2)), jnp.zeros(16, jnp.int32)
    for objective in ("cd", "dsm"):
        with pytest.raises(ValueError, match=r"takes examples only.*data\[0\].*jem_hybrid"):
            fit(e, (x, y), key=jax.random.key(0), num_steps=2, objective=objective, progress_bar=False)


def test_docs_name_the_real_jem_trainer_and_grad_norm():
    assert '``"jem"``' not in ebmppl.fit.__doc__ and "jem_hybrid" in ebmppl.fit.__doc__
    for page in ("using.md", "fitting.md"):
        text = (DOCS / "guide" / page).read_text()
        assert "score norm" not in text, page
    assert "grad_norm" in (DOCS / "guide" / "using.md").read_text()
