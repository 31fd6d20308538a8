"""The scripts' one error path (gptjax/cli.py): the `error:` line is the last thing a refused run prints."""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A main that leaves a coroutine never awaited in a reference cycle (as orbax does when a damaged checkpoint
# fails to read), then refuses its input: Python collects the coroutine at exit and would warn after the error.
SCRIPT = textwrap.dedent("""
    from gptjax.cli import main_guard
    from gptjax.errors import ConfigError

    async def read():
        return 1

    class Holder:
        pass

    @main_guard
    def main():
        held = Holder()
        held.cycle, held.pending = held, read()
        del held
        raise ConfigError("train.steps=0: expected 1 or more")

    main()
""")


def test_a_refusal_ends_with_its_error_line_even_with_a_coroutine_left_unawaited():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: train.steps=0: expected 1 or more", proc.stderr
    assert "never awaited" not in proc.stderr, proc.stderr
