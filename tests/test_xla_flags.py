"""Measured XLA defaults are added to XLA_FLAGS without overriding the user's choices."""
import subprocess
import sys
from pathlib import Path

from gptjax.xla_flags import CPU_DEFAULTS, apply_defaults, with_defaults

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_added_to_other_flags():
    flags = with_defaults("--xla_force_host_platform_device_count=8")
    assert flags.startswith("--xla_force_host_platform_device_count=8 ")
    for key, value in CPU_DEFAULTS.items():
        assert f"--{key}={value}" in flags.split()


def test_a_flag_the_user_set_wins():
    for key in CPU_DEFAULTS:
        flags = with_defaults(f"--{key}=dot").split()
        assert flags[0] == f"--{key}=dot"
        assert [f for f in flags if f.startswith(f"--{key}=")] == [f"--{key}=dot"]
        assert len(flags) == len(CPU_DEFAULTS)  # the other defaults are still added


def test_opt_out_adds_nothing():
    env = {"GPTJAX_XLA_DEFAULTS": "0", "XLA_FLAGS": "--a=1"}
    apply_defaults(env)
    assert env["XLA_FLAGS"] == "--a=1"
    env = {"GPTJAX_CACHE_DIR": "/somewhere"}
    apply_defaults(env)
    assert env["XLA_FLAGS"] == with_defaults("")
    assert env["JAX_COMPILATION_CACHE_DIR"] == "/somewhere/jax"
    env = {"JAX_COMPILATION_CACHE_DIR": "/mine"}
    apply_defaults(env)
    assert env["JAX_COMPILATION_CACHE_DIR"] == "/mine"


def test_scripts_start_jax_with_the_defaults_and_cache_compiled_steps(tmp_path):
    code = ("import sys; sys.path.insert(0, 'scripts'); import _bootstrap, os, jax; "
            "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0); "
            "print(jax.jit(lambda x: x * 2 + 1)(jax.numpy.ones(3)).sum()); print(os.environ['XLA_FLAGS'])")
    env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu", "GPTJAX_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env,
                         check=True).stdout
    assert f"--{next(iter(CPU_DEFAULTS))}=" in out and out.startswith("9.0")
    assert any((tmp_path / "jax").iterdir())  # the compiled function was written to the cache
