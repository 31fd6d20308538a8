"""Make `import gptjax` work when a script is run from a clone without installing."""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gptjax.xla_flags import apply_defaults  # noqa: E402  (XLA reads its flags when JAX starts)

apply_defaults()
