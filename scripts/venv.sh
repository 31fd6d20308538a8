# Sourced by run.sh and test.sh from the repository root: make .venv (again, if an interrupted run
# left it half-made) and bring its pip up to date; then install what the caller needs into it.
PYTHON=${PYTHON:-python3}
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  rm -rf .venv  # absent, or left half-made by an interrupted run
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
