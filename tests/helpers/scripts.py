"""Calling a script's `main` in-process, as a user's command line would: (exit status, captured output)."""
import importlib
import pathlib
import sys

SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "scripts"


def call_main(name: str, capsys, *args):
    """Run scripts/<name>.py's main with `args`; (status, what it printed), status 0 when it returned."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    script = importlib.import_module(name)
    capsys.readouterr()
    try:
        script.main([str(a) for a in args])
    except SystemExit as e:
        return e.code, capsys.readouterr()
    return 0, capsys.readouterr()
