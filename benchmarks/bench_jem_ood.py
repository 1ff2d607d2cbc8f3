"""JEM out-of-distribution scores and class-conditional samples on small trained JEMs (issue 15, finding 7).

Trains a JEM on digits (8x8 in [-1, 1]) and on standardised wine (13-D) with
``jem_hybrid``'s defaults, then prints the AUROC of every OOD score
(``ood_scores`` one-sided and with ``reference=``) against several kinds of
unusual input, and what :func:`ebmppl.jem.check_in_range` says about
unclamped and default class-conditional samples. Run: ``python benchmarks/bench_jem_ood.py``.
Both JEMs are built with ``joint_energy(..., data=x)``, so ``jem_hybrid``'s sampler
and buffer follow the data's range (since the "jem2" follow-up; before, the wine JEM
was trained with negatives clamped to [-1, 1]). The wine scenario before/after:
``python benchmarks/bench_jem_wine_scale.py``.
"""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebmppl import fit, sample, samplers
from ebmppl.jem import OutOfRangeWarning, check_in_range, jem_hybrid, joint_energy, sample_conditional
from ebmppl.latent import auroc, ood_scores


def train(x, y, num_classes, steps, event_shape):
    d = int(np.prod(event_shape))
    net = eqx.nn.MLP(d, num_classes, 128, 2, activation=jax.nn.silu, key=jax.random.key(0))
    classifier = eqx.nn.Lambda(lambda v, net=net: net(v.reshape(-1))) if len(event_shape) > 1 else net
    joint = joint_energy(classifier, event_shape=event_shape, data=x)
    result = fit(joint.energy, (x, y), key=jax.random.key(1), num_steps=steps, batch_size=128, progress_bar=False,
                 objective=jem_hybrid(joint, optax.adam(1e-3, b1=0.0), num_mcmc_steps=10), health=False)
    return joint, result


def report(name, joint, params, x_ref, x_in, oods):
    e = joint.energy.with_params(params)
    print(f"\n{name}: AUROC (in-distribution: {len(x_in)} held-out examples; reference: {len(x_ref)} others)")
    print(f"  {'inputs':16s} {'energy':>8s} {'grad_norm':>10s} {'energy+ref':>11s} {'grad_norm+ref':>14s}")
    for label, o in oods.items():
        row = [auroc(ood_scores(e, x_in, m, reference=r), ood_scores(e, o, m, reference=r))
               for r in (None, x_ref) for m in ("energy", "grad_norm")]
        print(f"  {label:16s} {row[0]:8.3f} {row[1]:10.3f} {row[2]:11.3f} {row[3]:14.3f}")


def samples_report(joint, params, y, init, sampler):
    out = sample(joint.conditional(params, y), jax.random.key(3), num_chains=init.shape[0], num_warmup=0,
                 num_samples=1, thinning=200, adapt=False, progress_bar=False, sampler=sampler, init=init)
    s = out.positions[:, 0]
    r = check_in_range(s, joint, warn=False)
    acc = float((joint.predict(params, s).argmax(1) == y).mean())
    return r, acc


def main():
    from ebmppl.data import load_digits

    x, y = map(jnp.asarray, load_digits("train"))
    xt, _ = load_digits("test")
    xt = jnp.asarray(xt)
    joint, res = train(x, y, 10, 600, (1, 8, 8))
    p = res.state.params
    print("digits JEM: energy_noise finite in", f"{np.isfinite(res.history['energy_noise']).mean():.0%}", "of steps")
    n = xt.shape[0] // 2
    oods = {"N(0, 9)": 3.0 * jax.random.normal(jax.random.key(5), (300, 1, 8, 8)),
            "uniform [-1,1]": jax.random.uniform(jax.random.key(7), (300, 1, 8, 8), minval=-1, maxval=1),
            "N(0,1) clipped": jnp.clip(jax.random.normal(jax.random.key(6), (300, 1, 8, 8)), -1, 1),
            "negated digits": -xt[n:],
            "shuffled pixels": jnp.asarray(np.random.default_rng(0).permuted(
                np.asarray(xt[n:]).reshape(-1, 64), axis=1).reshape(-1, 1, 8, 8))}
    report("digits JEM (600 steps)", joint, p, xt[:n], xt[n:], oods)
    init = jax.random.uniform(jax.random.key(4), (32, 1, 8, 8), minval=-1, maxval=1)
    class_samples(joint, p, 3, init, (("langevin(1, 0.01), no clamp", samplers.langevin(step_size=1.0, noise_scale=0.01)),
                                      ("langevin(10, 0.005), no clamp",
                                       samplers.langevin(step_size=10.0, noise_scale=0.005))))

    from sklearn.datasets import load_wine

    xw, yw = load_wine(return_X_y=True)
    xw = ((xw - xw.mean(0)) / xw.std(0)).astype(np.float32)
    perm = np.random.default_rng(0).permutation(len(xw))
    tr, ref, te = perm[:118], perm[118:148], perm[148:]
    joint, res = train(jnp.asarray(xw[tr]), jnp.asarray(yw[tr], jnp.int32), 3, 1000, (13,))
    p = res.state.params
    oods = {"N(0, 9)": 3.0 * jax.random.normal(jax.random.key(5), (300, 13)),
            "uniform box": jax.random.uniform(jax.random.key(6), (300, 13), minval=xw.min(0), maxval=xw.max(0)),
            "shuffled cols": jnp.asarray(np.stack([np.random.default_rng(i).permutation(xw[te][:, i])
                                                   for i in range(13)], 1))}
    report("wine JEM (1000 steps)", joint, p, jnp.asarray(xw[ref]), jnp.asarray(xw[te]), oods)
    init = jax.random.uniform(jax.random.key(4), (32, 13), minval=-1, maxval=1)
    class_samples(joint, p, 1, init, (("langevin(1, 0.01), no clamp", samplers.langevin(step_size=1.0, noise_scale=0.01)),))


def class_samples(joint, p, y, init, labelled_samplers):
    """Class-``y`` samples from unclamped samplers, then from ``sample_conditional``'s defaults: range and labels."""
    for label, sampler in labelled_samplers:
        r, acc = samples_report(joint, p, y, init, sampler)
        print(f"  class-{y} samples, {label}: max|x| {r.max_abs:.3g} (data {r.data_max_abs:.3g}), outside "
              f"{r.fraction_outside:.0%}, up to {r.max_excess:.3g} range widths; classified as {y}: {acc:.0%}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = sample_conditional(joint, p, y, jax.random.key(8), num_samples=32)
    print(f"  sample_conditional defaults: max|x| {float(jnp.abs(s).max()):.3g}, OutOfRangeWarnings: "
          f"{sum(issubclass(w.category, OutOfRangeWarning) for w in caught)}, classified as {y}: "
          f"{float((joint.predict(p, s).argmax(1) == y).mean()):.0%}")

if __name__ == "__main__":
    main()
