"""Read a Bayesian posterior with ArviZ
====================================

``sreels fit --method bayes`` writes ``posterior.nc``: ArviZ InferenceData with the
posterior of every parameter and derived number, the per-row log-likelihood, the observed
data, posterior-predictive replicas and prior draws, each variable with its units.  This
example prints the study's numbers, leave-one-row-out cross-validation and draws a
posterior predictive check.

Run: ``python examples/read_posterior.py POSTERIOR.nc [OUT.png]`` (for example
``sreels-demo/bayes/posterior.nc`` after ``sreels demo --bayes``).
"""

import sys
import warnings

import arviz as az
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NUMBERS = ["electrode_width_nm", "ti_boundary_nm", "li_max_rel", "li_at_ti_boundary_rel",
           "r_oo_parent_nm", "r_oo_max_nm"]


def main(path, out="ppc.png"):
    idata = az.from_netcdf(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few draws in a quick run: ArviZ warns about R-hat and ESS
        # round_to="none": R_OO varies in the fifth decimal of a nanometre
        table = az.summary(idata, var_names=NUMBERS, round_to="none", kind="stats")
        loo = az.loo(idata)
        az.plot_ppc(idata, var_names=["high"], num_pp_samples=2)
    for name, row in table.iterrows():
        units = idata.posterior[name].attrs["units"]
        print(f"{name:<24} {row['mean']:.6g} ± {row['sd']:.2g} {'' if units == '1' else units}")
    print(f"leave-one-row-out: elpd {loo.elpd_loo:.1f} ± {loo.se:.1f}, p_loo {loo.p_loo:.1f} "
          f"(about the number of parameters if the model fits), max Pareto k {loo.pareto_k.max().item():.2f}")
    plt.savefig(out, dpi=100)
    plt.close("all")
    return table, loo


if __name__ == "__main__":
    main(*sys.argv[1:])
