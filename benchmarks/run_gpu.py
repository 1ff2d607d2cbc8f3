"""Run the benchmark suite on the accelerator JAX finds and write ``docs/benchmarks/performance_gpu.md``.

The same scripts as ``run_all.py`` (CD steps for the MLP and the ConvNet
against a pure-JAX loop and PyTorch, the samplers against raw loops, scaling,
and sharding where there is more than one device), run on whatever platform
JAX picks (CUDA, ROCm, TPU). PyTorch runs on CUDA when ``torch.cuda`` sees a
GPU, on the CPU otherwise (the table says which), and is skipped when it is not
installed. Results go to ``benchmarks/results/<platform>/`` and the table is
rendered by ``run_all.render`` with the device's name, JAX version and the
float32 and bfloat16 matmul peaks measured on it.

``--smoke`` runs every script with tiny sizes on any platform (a CPU too), writes
into a temporary folder (printed) and leaves the docs alone: it checks the
pipeline, not the speed (minutes; 16 on 2 busy CPU cores).

Usage::

    pip install -e ".[bench]"   # plus a CUDA build of jax (jax[cuda12]) and of torch for the GPU rows
    python benchmarks/run_gpu.py                 # full suite on the accelerator
    python benchmarks/run_gpu.py --repeats 5     # fewer rounds
    python benchmarks/run_gpu.py --only cd_steps # one part (cd_steps, sampling, sharding); the table keeps the rest
    python benchmarks/run_gpu.py --table-only    # re-render from benchmarks/results/<platform>/
    python benchmarks/run_gpu.py --smoke         # tiny sizes, temporary folder, any platform
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import run_all

HERE = pathlib.Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "benchmarks" / "performance_gpu.md"
PROBE = ("import json, jax; d = jax.devices(); "
         "print(json.dumps({'platform': d[0].platform, 'devices': len(d), "
         "'device_kind': getattr(d[0], 'device_kind', d[0].platform), 'jax': jax.__version__}))")


def probe() -> dict:
    """The platform JAX picks, asked in a child process (so this one never holds accelerator memory)."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, cwd=HERE)
    return json.loads(out.stdout.strip().splitlines()[-1])


def commands(smoke: bool, repeats: int, devices: int, platform: str) -> list[list[str]]:
    """The scripts and their arguments: full sizes, or tiny ones for ``--smoke``."""
    if smoke:
        cmds = [["bench_cd_steps.py", "--model", "both", "--steps", "2", "--repeats", "1", "--pause", "0",
                 "--torch", "eager"],
                ["bench_sampling.py", "--smoke"],
                ["bench_sharding.py", "--repeats", "1", "--steps", "4", "--draws", "5", "--pause", "0"]]
    else:
        cmds = [["bench_cd_steps.py", "--model", "both", "--repeats", str(repeats)],
                ["bench_sampling.py", "--repeats", str(repeats)],
                ["bench_sharding.py", "--repeats", str(repeats)]]
    if devices < 2 and platform != "cpu":
        cmds = cmds[:2]  # one accelerator: nothing to shard (on a CPU, bench_sharding.py forces 2 host devices)
    return cmds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes into a temporary folder, any platform")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds per benchmark")
    parser.add_argument("--table-only", action="store_true", help="only re-render the table from the results")
    parser.add_argument("--only", default="", help="comma-separated subset of cd_steps,sampling,sharding "
                        "(results of the others already in the folder stay in the table)")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run the full suite even when JAX finds only a CPU (results under results/cpu/)")
    args = parser.parse_args(argv)
    dev = probe()
    platform = dev["platform"]
    if platform == "cpu" and not (args.smoke or args.allow_cpu or args.table_only):
        print("run_gpu.py: JAX finds no accelerator (platform cpu). Use run_all.py for the CPU tables, --smoke to "
              "check this script, or --allow-cpu to run it anyway.", file=sys.stderr)
        return 2
    if args.smoke:
        results = pathlib.Path(tempfile.mkdtemp(prefix=f"ebmppl-bench-{platform}-"))
        doc = results / f"performance_{platform}.md"
    else:
        results = HERE / "results" / platform
        doc = DOC if platform != "cpu" else results / "performance_cpu.md"
    print(f"platform {platform}: {dev['devices']} × {dev['device_kind']} (JAX {dev['jax']}); results in {results}",
          flush=True)
    if not args.table_only:
        env = {**os.environ, "EBMPPL_BENCH_RESULTS": str(results)}
        wanted = {w.strip() for w in args.only.split(",") if w.strip()}
        for cmd in commands(args.smoke, args.repeats, dev["devices"], platform):
            if wanted and cmd[0].removeprefix("bench_").removesuffix(".py") not in wanted:
                continue
            print(f"== {' '.join(cmd)}", flush=True)
            code = subprocess.run([sys.executable, *cmd], cwd=HERE, env=env).returncode
            if code:
                print(f"{cmd[0]} failed with exit status {code}", file=sys.stderr)
                return code
    title = f"Performance on {dev['device_kind']} ({platform})"
    command = "python benchmarks/run_gpu.py" + (" --smoke" if args.smoke else "")
    source = str(results) if args.smoke else f"benchmarks/results/{platform}/*.json"
    run_all.write_atomic(doc, run_all.render(results, title=title, command=command, source=source))
    print(f"wrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
