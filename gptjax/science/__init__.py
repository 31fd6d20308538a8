"""Research tooling above training: sweeps and their backends, reports, scaling-law fits, benchmarks."""
