"""FAD-inf estimators on Gaussians with a known Frechet distance: codecbench's own vs fadtk's (with replacement).

    python -m codecbench.bench.benchmarks.fad_inf_estimators [--dims 32] [--n-ref 2000] [--n-deg 1000] [--trials 20]

Reference frames ~ N(0, I_D), degraded frames ~ N(mu, A A^T) with a fixed seeded mu and A, so the true distance is
:func:`codecbench.bench.metrics.frechet.frechet_distance` of the true parameters. Per estimator: bias, RMSE and the
share of trials with status ``ok`` over ``--trials`` seeded draws of both sets; plain FAD on the full sets too.
"""

from __future__ import annotations

import argparse

import numpy as np
from codecbench.bench.metrics import frechet


def problem(dims: int, shift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """(mu [D], A [D, D], true FD) of the degraded Gaussian against N(0, I)."""
    rng = np.random.default_rng(seed)
    mu = shift * rng.standard_normal(dims) / np.sqrt(dims)
    a = np.eye(dims) + 0.3 * rng.standard_normal((dims, dims)) / np.sqrt(dims)
    return mu, a, frechet.frechet_distance(np.zeros(dims), np.eye(dims), mu, a @ a.T)


def run(dims: int = 32, n_ref: int = 2000, n_deg: int = 1000, trials: int = 20, shift: float = 1.0) -> dict:
    mu, a, truth = problem(dims, shift)
    errors: dict[str, list[float]] = {"fad (full sets)": [], "fadtk": [], "codecbench": []}
    ok = {"fadtk": 0, "codecbench": 0}
    for trial in range(trials):
        rng = np.random.default_rng(1000 + trial)
        ref = rng.standard_normal((n_ref, dims))
        deg = rng.standard_normal((n_deg, dims)) @ a.T + mu
        errors["fad (full sets)"].append(frechet.fad_from_embeddings(ref, deg) - truth)
        for name in ("fadtk", "codecbench"):
            result = frechet.fad_inf(ref, deg, estimator=name, seed=trial)
            errors[name].append(result.value - truth)
            ok[name] += result.status == "ok"
    out = {"true_fd": truth, "dims": dims, "n_ref": n_ref, "n_deg": n_deg, "trials": trials}
    for name, e in errors.items():
        e = np.asarray(e)
        out[name] = {"bias": float(e.mean()), "rmse": float(np.sqrt(np.mean(e**2))),
                     "ok_share": ok[name] / trials if name in ok else None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, default=32)
    parser.add_argument("--n-ref", type=int, default=2000)
    parser.add_argument("--n-deg", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--shift", type=float, default=1.0)
    args = parser.parse_args()
    result = run(args.dims, args.n_ref, args.n_deg, args.trials, args.shift)
    print(f"true FD {result['true_fd']:.4f}; D = {args.dims}, N_ref = {args.n_ref}, N_deg = {args.n_deg}, "
          f"{args.trials} trials")
    print("| estimator | bias | RMSE | status ok |\n|---|---:|---:|---:|")
    for name in ("fad (full sets)", "fadtk", "codecbench"):
        r = result[name]
        share = "-" if r["ok_share"] is None else f"{100 * r['ok_share']:.0f} %"
        print(f"| {name} | {r['bias']:+.4f} | {r['rmse']:.4f} | {share} |")


if __name__ == "__main__":
    main()
