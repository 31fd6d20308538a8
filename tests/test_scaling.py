"""Scaling-law fits (gptjax.science: power_law, chinchilla, isoflop) and the scripts/scaling.py command line."""
import csv
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from gptjax.errors import DataError
from gptjax.science import chinchilla, isoflop, power_law

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "scaling.py"

# Hoffmann et al. (2022) approach-3 fit, the law our synthetic data come from.
LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def chinchilla_loss(N, D, law=LAW):
    return law["E"] + law["A"] / N ** law["alpha"] + law["B"] / D ** law["beta"]


def synthetic_grid(k, noise, seed):
    """k x k grid of N in 1e7..1e10 and D in 1e8..1e11, multiplicative noise."""
    N, D = np.meshgrid(np.logspace(7, 10, k), np.logspace(8, 11, k))
    N, D = N.ravel(), D.ravel()
    rng = np.random.default_rng(seed)
    return N, D, chinchilla_loss(N, D) * np.exp(noise * rng.standard_normal(N.shape))


def isoflop_runs(budgets, per_budget=9, noise=0.002, seed=0):
    """Runs on IsoFLOP curves C = 6ND around each budget's true optimum."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        n_star, _ = chinchilla.compute_optimal(LAW, C)
        for N in n_star * np.geomspace(1 / 6, 6, per_budget):
            D = C / (6 * N)
            loss = chinchilla_loss(N, D) * np.exp(noise * rng.standard_normal())
            rows.append((N, D, C, loss))
    return [np.array(col) for col in zip(*rows)]


# --------------------------------------------------------------------------- #
# Chinchilla approach 3
# --------------------------------------------------------------------------- #
def test_fit_chinchilla_recovers_law():
    # 24 x 24 grid, 1% noise: over 40 noise seeds every fit met these tolerances
    # (95th percentile errors: alpha 0.008, beta 0.005, E 1.6%).
    N, D, loss = synthetic_grid(24, 0.01, seed=0)
    fit = chinchilla.fit_chinchilla(N, D, loss, n_starts=16)
    assert abs(fit.alpha - 0.34) < 0.02
    assert abs(fit.beta - 0.28) < 0.02
    assert abs(fit.E / 1.69 - 1) < 0.02
    assert fit.r2_log > 0.99
    assert fit.ci is None and fit.n_points == 576


def test_fit_chinchilla_exact_data_is_exact():
    N, D, loss = synthetic_grid(8, 0.0, seed=0)
    fit = chinchilla.fit_chinchilla(N, D, loss, n_starts=16)
    for k, v in LAW.items():
        assert fit.params[k] == pytest.approx(v, rel=1e-3)
    assert fit.r2_log == pytest.approx(1.0, abs=1e-9)


def test_fit_chinchilla_bootstrap_is_deterministic():
    N, D, loss = synthetic_grid(7, 0.01, seed=1)
    a = chinchilla.fit_chinchilla(N, D, loss, bootstrap=8, seed=3, n_starts=8,
                               bootstrap_starts=1)
    b = chinchilla.fit_chinchilla(N, D, loss, bootstrap=8, seed=3, n_starts=8,
                               bootstrap_starts=1)
    c = chinchilla.fit_chinchilla(N, D, loss, bootstrap=8, seed=4, n_starts=8,
                               bootstrap_starts=1)
    assert a.params == b.params and a.ci == b.ci
    assert a.ci != c.ci
    assert set(a.ci) == {"E", "A", "B", "alpha", "beta", "a", "b"}
    for name in ("alpha", "beta"):
        lo, hi = a.ci[name]
        assert lo <= hi
    out = a.to_dict()
    assert out["form"] == "chinchilla" and out["n_bootstrap"] == 8
    assert out["params"]["alpha"]["ci"] == list(a.ci["alpha"])
    assert set(out["derived"]) == {"a", "b"}
    json.dumps(out)


def test_compute_optimal_closed_form():
    # The paper's law gives N_opt ~ C^0.45, D_opt ~ C^0.55 (its table 2 lists
    # 0.46 / 0.54 for approach 3).
    C = np.array([1e20, 5.76e23, 1e25])
    n_opt, d_opt = chinchilla.compute_optimal(LAW, C)
    np.testing.assert_allclose(6 * n_opt * d_opt, C, rtol=1e-12)
    slope = np.diff(np.log(n_opt)) / np.diff(np.log(C))
    np.testing.assert_allclose(slope, 0.28 / 0.62)
    # The closed form is the minimum of the loss along C = 6ND.
    for c, n in zip(C, n_opt):
        grid = n * np.geomspace(0.5, 2, 2001)
        best = grid[np.argmin(chinchilla_loss(grid, c / (6 * grid)))]
        assert best == pytest.approx(n, rel=2e-3)
    n1, d1 = chinchilla.compute_optimal(LAW, 1e21)
    assert isinstance(n1, float) and 6 * n1 * d1 == pytest.approx(1e21)


# --------------------------------------------------------------------------- #
# Power laws
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("variable, lo, hi, E, A, alpha", [
    ("N", 7, 10, 1.8, 300.0, 0.3),
    ("C", 17, 22, 1.7, 710.0, 0.15),
])
def test_fit_power_recovers_law(variable, lo, hi, E, A, alpha):
    # 50 points, 0.5% noise: 59/60 noise seeds met these tolerances.
    rng = np.random.default_rng(7)
    x = np.logspace(lo, hi, 50)
    loss = (E + A / x ** alpha) * np.exp(0.005 * rng.standard_normal(50))
    fit = power_law.fit_power(x, loss, variable=variable, bootstrap=20, seed=0)
    assert abs(fit.alpha - alpha) < 0.02
    assert abs(fit.E / E - 1) < 0.03
    assert fit.r2_log > 0.99
    assert fit.ci["alpha"][0] <= fit.alpha <= fit.ci["alpha"][1]
    assert fit.form == f"power_{variable.lower()}"
    np.testing.assert_allclose(fit.predict(x), E + A / x ** alpha, rtol=0.01)


def test_fit_power_rejects_bad_input():
    with pytest.raises(ValueError):
        power_law.fit_power([1e6, 1e7, 1e8], [3.0, 2.5, 2.2])  # too few points
    with pytest.raises(ValueError):
        power_law.fit_power([1e6, -1e7, 1e8, 1e9], [3.0, 2.5, 2.2, 2.1])


# --------------------------------------------------------------------------- #
# IsoFLOP (approach 2)
# --------------------------------------------------------------------------- #
def test_isoflop_recovers_exponents():
    budgets = [1e18, 3e18, 1e19, 3e19, 1e20, 3e20]
    N, D, C, loss = isoflop_runs(budgets)
    fit = isoflop.isoflop_fit(N, D, C, loss, bootstrap=30, seed=0)
    true_a = 0.28 / 0.62
    assert fit.params["a"] == pytest.approx(true_a, abs=0.01)
    assert fit.params["b"] == pytest.approx(1 - true_a, abs=0.01)
    assert fit.r2_log > 0.99 and fit.r2_log_nopt > 0.99
    np.testing.assert_allclose(fit.budgets, budgets)
    n_true, _ = chinchilla.compute_optimal(LAW, np.array(budgets))
    np.testing.assert_allclose(fit.n_opt, n_true, rtol=0.1)
    lo, hi = fit.ci["a"]
    assert lo < fit.params["a"] < hi and hi - lo < 0.05
    json.dumps(fit.to_dict())


def test_isoflop_skips_non_convex_budget_and_needs_two():
    N, D, C, loss = isoflop_runs([1e18, 1e19, 1e20], noise=0.0)
    loss = np.where(C == 1e20, 5.0 - 0.1 * np.log(N), loss)  # monotone: no minimum
    fit = isoflop.isoflop_fit(N, D, C, loss)
    assert list(fit.budgets) == [1e18, 1e19]
    assert 1e20 in fit.skipped
    with pytest.raises(ValueError, match="at least 2 compute budgets"):
        m = C != 1e19
        isoflop.isoflop_fit(N[m], D[m], C[m], loss[m])


def test_bucket_by_compute():
    C = np.array([1e18, 1.02e18, 0.99e18, 3e18, 3.1e18, 1e19])
    b = isoflop.bucket_by_compute(C, rtol=0.1)
    assert len(np.unique(b)) == 3
    assert b[0] == b[1] == b[2] and b[3] == b[4] != b[5]
    assert b[0] == pytest.approx(1e18, rel=0.02)


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #
def write_csv(path, rows, fields):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def run_cli(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def sweep_csv(tmp_path_factory):
    """A sweep report: extra columns, one row with an empty loss, one NaN."""
    N, D, loss = synthetic_grid(6, 0.01, seed=2)
    rows = [{"run": f"r{i}", "params": n, "tokens": d, "flops": 6 * n * d, "loss": l,
             "lr": 3e-4} for i, (n, d, l) in enumerate(zip(N, D, loss))]
    rows.append({"run": "crashed", "params": 1e8, "tokens": 1e9, "flops": 6e17, "loss": "",
                 "lr": 3e-4})
    rows.append({"run": "diverged", "params": 1e8, "tokens": 1e9, "flops": 6e17,
                 "loss": "nan", "lr": 3e-4})
    path = tmp_path_factory.mktemp("sweep") / "sweep.csv"
    write_csv(path, rows, ["run", "params", "tokens", "flops", "loss", "lr"])
    return path


def test_cli_fit_chinchilla_writes_json_and_png(sweep_csv, tmp_path):
    png = tmp_path / "fit.png"
    proc = run_cli("fit", "--csv", sweep_csv, "--form", "chinchilla", "--bootstrap", "5",
                   "--n-starts", "8", "--seed", "1", "--plot", png)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["form"] == "chinchilla" and out["n_points"] == 36 and out["n_skipped"] == 2
    assert set(out["params"]) == {"E", "A", "B", "alpha", "beta"}
    for p in out["params"].values():
        assert len(p["ci"]) == 2 and p["ci"][0] <= p["ci"][1]
    assert out["r2_log"] > 0.98
    # the law's exponents, each on its own column (read swapped, N's 0.34 and D's 0.28 trade places)
    assert abs(out["params"]["alpha"]["value"] - LAW["alpha"]) < 0.03
    assert abs(out["params"]["beta"]["value"] - LAW["beta"]) < 0.03
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_power_and_isoflop(sweep_csv, tmp_path):
    proc = run_cli("fit", "--csv", sweep_csv, "--form", "power_c", "--bootstrap", "0")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["form"] == "power_c" and out["params"]["alpha"]["ci"] is None

    N, D, C, loss = isoflop_runs([1e18, 1e19, 1e20])
    rows = [{"params": n, "tokens": d, "flops": c * 1.01 ** (i % 3 - 1), "loss": l}
            for i, (n, d, c, l) in enumerate(zip(N, D, C, loss))]
    iso_csv = tmp_path / "iso.csv"
    write_csv(iso_csv, rows, ["params", "tokens", "flops", "loss"])
    png = tmp_path / "iso.png"
    proc = run_cli("isoflop", "--csv", iso_csv, "--bootstrap", "10", "--plot", png)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["n_budgets"] == 3  # the 1% FLOPs jitter is bucketed away
    assert out["params"]["a"]["value"] == pytest.approx(0.28 / 0.62, abs=0.02)
    assert png.exists()


def test_cli_bad_input_exits_2_and_writes_nothing(sweep_csv, tmp_path):
    png = tmp_path / "never.png"
    proc = run_cli("fit", "--csv", sweep_csv, "--form", "chinchilla", "--loss-col", "val_loss",
                   "--plot", png)
    assert proc.returncode == 2
    assert proc.stdout == "" and not png.exists()
    msg = proc.stderr.strip()
    assert "\n" not in msg and "val_loss" in msg
    assert "run, params, tokens, flops, loss, lr" in msg  # names the columns that exist

    proc = run_cli("fit", "--csv", tmp_path / "missing.csv", "--form", "power_n")
    assert proc.returncode == 2 and "not found" in proc.stderr and proc.stdout == ""

    few = tmp_path / "few.csv"
    write_csv(few, [{"params": 1e7 * 10 ** i, "loss": 3.0 - 0.2 * i} for i in range(3)],
              ["params", "loss"])
    proc = run_cli("fit", "--csv", few, "--form", "power_n", "--plot", png)
    assert proc.returncode == 2 and "at least 4" in proc.stderr and not png.exists()

    one_budget = tmp_path / "one_budget.csv"
    N, D, C, loss = isoflop_runs([1e19])
    write_csv(one_budget, [{"params": n, "tokens": d, "flops": c, "loss": l}
                           for n, d, c, l in zip(N, D, C, loss)],
              ["params", "tokens", "flops", "loss"])
    proc = run_cli("isoflop", "--csv", one_budget, "--plot", png)
    assert proc.returncode == 2 and not png.exists() and proc.stdout == ""
    assert "at least 2 compute budgets" in proc.stderr


@pytest.mark.parametrize("form, rows, words", [
    ("power_n", [{"params": 1e8, "loss": 3.0 - 0.1 * i} for i in range(8)], "only 1 distinct value(s) of N"),
    ("power_c", [{"flops": 1e18 * (1 + i % 2), "loss": 3.0 - 0.1 * i} for i in range(8)],
     "only 2 distinct value(s) of C"),
    ("power_n", [{"params": 1e7 * 2 ** i, "loss": 2.5} for i in range(8)], "the loss is the same (2.5)"),
    ("chinchilla", [{"params": 1e7 * 2 ** i, "tokens": 1e9, "loss": 3.0 - 0.1 * i} for i in range(8)],
     "only 1 distinct value(s) of D"),
])
def test_cli_refuses_a_fit_the_data_cannot_identify(tmp_path, form, rows, words):
    path = tmp_path / "runs.csv"
    write_csv(path, rows, list(rows[0]))
    png = tmp_path / "fit.png"
    proc = run_cli("fit", "--csv", path, "--form", form, "--bootstrap", "5", "--plot", png)
    assert proc.returncode == 2 and proc.stdout == "" and not png.exists()
    msg = proc.stderr.strip()
    assert "\n" not in msg and "not identifiable" in msg and words in msg
    assert "3 or more distinct values" in msg and "losses that differ" in msg  # what the data needs


def test_identifiability_is_checked_by_the_fits_themselves():
    x = np.array([1e7, 1e7, 1e9, 1e9, 1e9])
    with pytest.raises(DataError, match="not identifiable"):
        power_law.fit_power(x, 2.0 + 10 / x ** 0.3)
    N, D, loss = synthetic_grid(4, 0.0, seed=0)
    with pytest.raises(DataError, match="the loss is the same"):
        chinchilla.fit_chinchilla(N, D, np.full_like(loss, 3.0))
    fit = power_law.fit_power(np.array([1e7, 1e8, 1e9, 1e9]), 2.0 + 10 / np.array([1e7, 1e8, 1e9, 1e9]) ** 0.3)
    assert fit.alpha == pytest.approx(0.3, abs=1e-3)  # three distinct x values are enough


@pytest.mark.parametrize("plot, words", [
    ("{tmp}", "is a folder"),
    ("{tmp}/fit.txt", "ending in .png"),
    ("{tmp}/fit", "ending in .png"),
    ("{tmp}/missing/fit.png", "does not exist"),
])
def test_cli_refuses_a_plot_that_is_not_a_png_file(sweep_csv, tmp_path, plot, words):
    plot = plot.format(tmp=tmp_path / "out")
    (tmp_path / "out").mkdir()
    proc = run_cli("fit", "--csv", sweep_csv, "--form", "power_n", "--bootstrap", "0", "--plot", plot)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == proc.stderr.strip().splitlines()[0] and "--plot" in proc.stderr
    assert words in proc.stderr
    assert list((tmp_path / "out").iterdir()) == [] and not (tmp_path / "out.png").exists()


def test_cli_bad_flags_exit_2_naming_the_flag(sweep_csv):
    proc = run_cli("fit", "--csv", sweep_csv, "--form", "power_n", "--ci", "1.5")
    assert proc.returncode == 2 and proc.stdout == "" and "--ci=1.5" in proc.stderr
    proc = run_cli("isoflop", "--csv", sweep_csv, "--bucket-rtol", "-1")
    assert proc.returncode == 2 and "--bucket-rtol=-1" in proc.stderr
