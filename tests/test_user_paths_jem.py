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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = sample_conditional(joint, params, 7, jax.random.key(7), num_samples=16, num_steps=100)
    # in range; this briefly trained JEM's samples are saturated (pixels piled on ±1 far more often than in
    # the data), which the check reports since the "jem2" follow-up
    assert not [w for w in caught if "outside the training data's range" in str(w.message)]
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


# ---------------------------------------------------------------- data on another scale (follow-up "jem2")
def _tabular(n=240, d=6, seed=0, spread=1.5):
    """Three standardised Gaussian classes in d dimensions: range about ±3, like standardised tabular data."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    y = jnp.arange(n, dtype=jnp.int32) % 3
    centres = spread * jax.random.normal(k1, (3, d))
    x = centres[y] + jax.random.normal(k2, (n, d))
    return (x - x.mean(0)) / x.std(0), y


def test_jem_hybrid_without_data_warns_that_standardised_data_leave_the_sampler_box():
    x, y = _tabular()
    joint = joint_energy(eqx.nn.MLP(6, 3, 16, 1, key=jax.random.key(0)), event_shape=(6,))
    with pytest.warns(OutOfRangeWarning, match=r"outside the box.*\[-1, 1\].*joint_energy\(\.\.\., data=x_train\)"):
        fit(joint.energy, (x, y), key=jax.random.key(1), num_steps=2, progress_bar=False, health=False,
            objective=jem_hybrid(joint, optax.adam(1e-3), num_mcmc_steps=2))


def test_jem_hybrid_defaults_follow_the_data_recorded_by_joint_energy():
    x, y = _tabular()
    joint = joint_energy(eqx.nn.MLP(6, 3, 16, 1, key=jax.random.key(0)), event_shape=(6,), data=x)
    low, high = joint.data_range()
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfRangeWarning)
        # a list [x, y] is the same as the tuple (x, y)
        result = fit(joint.energy, [x, y], key=jax.random.key(1), num_steps=20, batch_size=32, progress_bar=False,
                     health=False, objective=jem_hybrid(joint, optax.adam(1e-3), num_mcmc_steps=5))
    negatives = np.asarray(result.state.buffer.samples)
    # before: the buffer lived in [-1, 1] while the data reach about ±3; now it covers the data's box, no more
    assert np.all(negatives >= low - 1e-5) and np.all(negatives <= high + 1e-5)
    assert np.abs(negatives).max() > 2.0 and np.all(np.isfinite(result.history["loss"]))


def test_samples_piled_on_a_clamp_box_are_flagged_though_inside_the_range():
    # the stranger's case: a sampler clamped to [-1, 1] on data spanning about ±3; the classifier's energy
    # falls towards the box's corners, so the chains pile on its edges, inside the data's range
    x, _ = _tabular(seed=1)
    joint = joint_energy(eqx.nn.Linear(6, 3, key=jax.random.key(0)), event_shape=(6,))
    image_sampler = samplers.langevin(step_size=1.0, noise_scale=0.01, clamp=(-1.0, 1.0))
    with pytest.warns(OutOfRangeWarning, match=r"shared edge value.*clamp box.*data=x_train"):
        s = sample_conditional(joint, joint.energy.params, 0, jax.random.key(2), num_samples=32, num_steps=100,
                               sampler=image_sampler, reference=x)
    report = check_in_range(s, x, warn=False)
    assert report.fraction_outside == 0.0  # what the check said before: all is well
    assert report.fraction_piled > 0.5 and report.data_fraction_piled < 0.05


def test_samples_far_from_every_example_are_flagged_and_data_like_samples_are_not():
    rows, y = _tabular(n=800, seed=2, spread=4.0)  # three well separated classes
    x, alike = rows[:600], rows[600:]  # alike: 200 other draws of the same three classes
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfRangeWarning)
        report = check_in_range(alike, x)
    assert report.fraction_far < 0.05 + 4 * np.sqrt(0.05 * 0.95 / 200)
    # inside the range, not piled, but in the empty space between the classes
    means = jnp.stack([rows[y == c].mean(0) for c in range(3)])
    between = means.mean(0) + 0.1 * jax.random.normal(jax.random.key(8), (50, 6))
    with pytest.warns(OutOfRangeWarning, match="farther from every reference example"):
        report = check_in_range(between, x)
    assert report.fraction_outside == 0.0 and report.fraction_far > 0.5


def test_float_labels_and_a_mismatched_second_array_get_messages_that_fit_them():
    x, y = _tabular(n=30)
    joint = joint_energy(eqx.nn.MLP(6, 3, 8, 1, key=jax.random.key(0)), event_shape=(6,), data=x)
    trainer = jem_hybrid(joint, optax.adam(1e-3), num_mcmc_steps=2)
    with pytest.raises(ValueError, match=r"class indices.*float32.*y\.astype\(int\)") as caught:
        fit(joint.energy, (x, y.astype(jnp.float32)), key=jax.random.key(1), num_steps=2, objective=trainer,
            progress_bar=False)
    assert "mask" not in str(caught.value)  # the mask alternative does not apply to labels
    with pytest.raises(ValueError, match=r"labels of shape \(30,\).*boolean observation mask"):
        fit(joint.energy, [x, y[:10]], key=jax.random.key(1), num_steps=2, objective=trainer, progress_bar=False)
