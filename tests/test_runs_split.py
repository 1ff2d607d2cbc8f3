"""The run package split by job (issue 16): escaped reports from shipped templates, renamed options, run folders.

Fast checks through the public API (``ebmppl.runs``, ``ebmppl.cli.main``, ``ebmppl.load``); the full pipeline
runs in tests/test_cli_examples.py and tests/test_user_paths_cli.py.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebmppl
from ebmppl._deprecation import EbmpplDeprecationWarning
from ebmppl.checkpoint import CheckpointError, save_checkpoint
from ebmppl.runs import FitConfig, compare_run, load_run_energy

SCRIPT = '<script>alert("x")</script>'


def test_fit_report_escapes_every_user_value():
    from ebmppl.runs.report import fit_report

    cfg = FitConfig(data="/tmp/<script>x.csv", out=f"runs/{SCRIPT}")
    evaluation = {"dim": 3, "n_train": 8, "n_test": 2, "log_z_method": SCRIPT, SCRIPT: 1.0,
                  "health_warnings": [f"step 3: {SCRIPT}"]}
    page = fit_report(cfg, evaluation)
    assert "<script" not in page.lower()
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
    # the log Z method (about paragraph, evaluation table), a key, the out folder (config table), the warning
    assert page.count(escaped) == 5, page
    assert f"<li>step 3: {escaped}</li>" in page and f"<th>{escaped}</th><td>1.0</td>" in page
    # the data file: in the title and heading (its name) and the about paragraph and config table (its path)
    assert "<title>ebmppl fit: &lt;script&gt;x.csv</title>" in page and page.count("&lt;script&gt;x.csv") == 4


def test_compare_report_escapes_the_run_name(tmp_path):
    path = ebmppl.save(tmp_path / f"{SCRIPT.replace('/', '|')}.ebm", ebmppl.targets.banana().energy)
    out = tmp_path / "cmp"
    compare_run(None, ["mala"], out=str(out), checkpoint=str(path), num_chains=2, num_warmup=20, num_samples=20,
                progress_bar=False)
    page = (out / "report.html").read_text()
    assert "<script" not in page.lower() and "&lt;script&gt;" in page
    assert "2 chains, 20 warm-up and 20 kept draws each" in page


def test_templates_are_package_data_and_render_is_strict():
    from ebmppl.runs.report import render

    folder = importlib.resources.files("ebmppl.runs").joinpath("templates")
    assert {"fit_report.html", "compare_report.html"} <= {p.name for p in folder.iterdir()}
    with pytest.raises(ValueError, match=r"missing values \['figures'.*unknown values \['extra'\]"):
        render("compare_report.html", name="x", num_chains=1, num_warmup=1, num_samples=1, table="", extra=1)


def test_fit_config_mcmc_steps_is_a_deprecated_name():
    with pytest.warns(EbmpplDeprecationWarning, match="mcmc_steps= is deprecated; use num_mcmc_steps="):
        cfg = FitConfig(mcmc_steps=7)
    assert cfg.num_mcmc_steps == 7 and cfg.resolved().num_mcmc_steps == 7
    assert "mcmc_steps" not in cfg.to_json() and cfg.to_json()["num_mcmc_steps"] == 7
    with pytest.raises(TypeError, match="not both"):
        FitConfig(mcmc_steps=7, num_mcmc_steps=8)
    with pytest.warns(EbmpplDeprecationWarning, match="init= is deprecated; use init_strategy="):
        assert FitConfig(init="cd_k").init_strategy == "cd_k"
    with pytest.raises(TypeError, match="not both"):
        FitConfig(init="cd_k", init_strategy="short_run")
    with pytest.raises(TypeError):  # the old names are keyword-only
        FitConfig(*[None] * (len(dataclasses.fields(FitConfig)) + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = FitConfig(num_mcmc_steps=5, init_strategy="short_run").resolved()
    assert (cfg.num_mcmc_steps, cfg.init_strategy) == (5, "short_run")


def test_fit_run_passes_the_new_names_to_fit(tmp_path, monkeypatch):
    import ebmppl.runs.pipeline as pipeline

    seen = {}

    def fake_fit(energy, key, data, **kw):
        seen.update(kw)
        raise KeyboardInterrupt  # stop before training: only the wiring is checked here

    monkeypatch.setattr(pipeline, "fit", fake_fit)
    cfg = FitConfig(widths=(8,), num_mcmc_steps=3, init_strategy="short_run", sampler_params={"step_size": 0.02},
                    out=str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        ebmppl.runs.fit_run(cfg, progress_bar=False)
    assert seen["num_mcmc_steps"] == 3 and seen["sampler_params"] == {"step_size": 0.02}
    assert seen["chain_init"].name == "short_run"
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["num_mcmc_steps"], saved["init_strategy"], saved["sampler_params"]) == (3, "short_run",
                                                                                          {"step_size": 0.02})
    with pytest.raises(ValueError, match="sampler_params must be a dict"):
        FitConfig(sampler_params=[0.1]).resolved()


def test_compare_run_old_count_names_warn(tmp_path):
    with pytest.warns(EbmpplDeprecationWarning) as caught:
        compare_run("gaussian", ["mala"], out=str(tmp_path), chains=2, warmup=20, samples=30, progress_bar=False)
    renamed = {str(w.message).split(": ")[1].split("=")[0] for w in caught if w.category is EbmpplDeprecationWarning}
    assert renamed == {"chains", "warmup", "samples"}
    assert "2 chains, 20 warm-up and 30 kept draws each" in (tmp_path / "report.html").read_text()
    with pytest.raises(TypeError, match="not both"):
        compare_run("gaussian", ["mala"], out=str(tmp_path), samples=3, num_samples=4)


def test_an_older_run_folder_loads_through_runs_not_io(tmp_path):
    """config.json with the old key mcmc_steps + a checkpoint without an energy description (an older ebmppl)."""
    from ebmppl.runs.data import load_split
    from ebmppl.runs.training import build_energy, state_template

    raw = {"dataset": "two_moons", "widths": [8], "init": "short_run", "steps": 10, "mcmc_steps": 3, "seed": 1}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.warns(EbmpplDeprecationWarning):
        cfg = FitConfig(**{**raw, "widths": (8,)}).resolved()
    energy = build_energy(cfg, load_split(cfg)[0], legacy=True)
    state = state_template(cfg, energy)
    params = jax.tree.map(lambda p: p + 0.25, state.params)
    save_checkpoint(tmp_path / "checkpoint.ebm", state._replace(params=params), metadata={"step": 10})

    with pytest.warns(EbmpplDeprecationWarning) as caught:
        loaded, cfg = load_run_energy(tmp_path)
    assert {"mcmc_steps", "init"} <= {str(w.message).split(": ")[1].split("=")[0] for w in caught}
    assert (cfg.num_mcmc_steps, cfg.init_strategy, cfg.widths) == (3, "short_run", (8,))
    probe = jnp.array([[0.1, -0.3], [1.0, 0.5]])
    np.testing.assert_array_equal(np.asarray(loaded.energy(probe)),
                                  np.asarray(energy.with_params(params).energy(probe)))
    with pytest.raises(CheckpointError, match=r"ebmppl\.runs\.load_run_energy"):
        ebmppl.load(tmp_path)  # io does not import the run pipeline: it says where to go


def test_cli_new_and_old_flag_spellings(tmp_path, capsys):
    from ebmppl.cli import main

    common = ["sample", "--target", "gaussian", "--sampler", "mala", "--chains", "2", "--quiet"]
    assert main([*common, "--num-warmup", "10", "--num-samples", "20", "--out", str(tmp_path / "new")]) == 0
    assert "deprecated" not in capsys.readouterr().err
    assert main([*common, "--warmup", "10", "--samples", "20", "--out", str(tmp_path / "old")]) == 0
    err = capsys.readouterr().err
    assert "--warmup= is deprecated; use --num-warmup=" in err and "--samples= is deprecated" in err
    for name in ("new", "old"):
        assert np.load(tmp_path / name / "draws.npy").shape == (2, 20, 2)
    with pytest.raises(SystemExit) as exc:
        main([*common, "--warmup", "10", "--num-warmup", "10", "--out", str(tmp_path / "both")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(lines) == 1 and "--num-warmup" in lines[0] and "not both" in lines[0]


def test_cli_fit_help_shows_new_names_only():
    from ebmppl.cli import _parser

    text = _parser()._subparsers._group_actions[0].choices["fit"].format_help()
    assert "--num-mcmc-steps" in text and "\n  --mcmc-steps" not in text
    assert "--init-strategy" in text and "\n  --init " not in text
    args = _parser().parse_args(["fit", "--mcmc-steps", "4", "--init", "cd_k"])
    assert (args.deprecated_mcmc_steps, args.deprecated_init) == (4, "cd_k")
