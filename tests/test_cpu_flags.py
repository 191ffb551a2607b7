"""Importing aggpose_jax sets the XLA:CPU emitter flag, without overriding a user's own choice."""

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

# Runs a computation after the import: XLA parses XLA_FLAGS when it creates the CPU backend and aborts
# on a flag it does not know, so a misspelt or retired flag fails here.
_PRINT_FLAGS = (
    "import aggpose_jax, os, jax; jax.numpy.zeros(1).block_until_ready(); "
    "print(os.environ['XLA_FLAGS'])"
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "--xla_cpu_use_fusion_emitters=false"),
        ("--xla_force_host_platform_device_count=2",
         "--xla_force_host_platform_device_count=2 --xla_cpu_use_fusion_emitters=false"),
        ("--xla_cpu_use_fusion_emitters=true", "--xla_cpu_use_fusion_emitters=true"),
    ],
)  # fmt: skip
def test_import_sets_cpu_emitter_flag(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if given is not None:
        env["XLA_FLAGS"] = given
    out = subprocess.run(
        [sys.executable, "-c", _PRINT_FLAGS], cwd=REPO_ROOT, env=env, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == expected
