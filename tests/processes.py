"""Tests that run a script as two processes, the two hosts of one multi-host JAX job, on this CPU.

Inside a script: `join_job(parser)` parses the process options, fakes the devices and joins the job
(before anything imports jax). In a test: `start_two(script, args)` launches it twice with a shared
coordinator and `json_results(procs)` returns each process's last stdout line as JSON (`last_json`).
"""

import argparse
import json
import os
import subprocess
import sys


def join_job(parser: argparse.ArgumentParser, devices: int) -> argparse.Namespace:
    """Parses the script's args plus --devices/--coordinator/--num_processes/--process_id.

    Sets XLA_FLAGS to fake `--devices` CPU devices, imports jax and, given a coordinator, joins
    the job over gloo. Call it before jax is imported anywhere.
    """
    parser.add_argument("--devices", type=int, default=devices)
    parser.add_argument("--coordinator", default="")
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--process_id", type=int, default=0)
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    import jax

    if args.coordinator:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    return args


def start_two(script, args: list[str], port_offset: int = 0) -> list[subprocess.Popen]:
    """`python script *args` as processes 0 and 1 of one job (a free-ish port per test process)."""
    port = 20000 + (os.getpid() + port_offset) % 20000
    return [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                *args,
                f"--coordinator=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]


def last_json(stdout: str) -> dict:
    """A script's result: its last stdout line, parsed as JSON."""
    return json.loads(stdout.strip().splitlines()[-1])


def json_results(procs: list[subprocess.Popen], timeout: float = 400) -> list[dict]:
    """Waits for every process, asserts exit 0 (showing stderr), parses each last stdout line."""
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    return [last_json(out) for out, _ in outs]
