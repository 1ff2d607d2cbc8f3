"""The command line and the gallery examples run end to end (examples in fast mode)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("plot_*.py"))


def test_cli_sample_writes_run_folder(tmp_path):
    from ebmppl.cli import main

    out = tmp_path / "run"
    assert main(["sample", "--target", "gaussian", "--sampler", "mala", "--warmup", "200",
                 "--samples", "200", "--out", str(out)]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["sampler"] == "mala" and info["max_rhat"] < 1.1
    assert (out / "samples.png").stat().st_size > 10_000
    assert (out / "summary.csv").exists() and (out / "draws.npy").exists()


def test_cli_rejects_bad_values(capsys):
    from ebmppl.cli import main

    with pytest.raises(SystemExit) as err:
        main(["sample", "--chains", "0"])
    assert err.value.code == 2
    assert "--chains must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_in_fast_mode(script, tmp_path):
    env = {**os.environ, "EBMPPL_FAST": "1", "EBMPPL_FIGURE": str(tmp_path / "figure.png"), "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "figure.png").exists()
