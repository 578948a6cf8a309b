"""The claims ledger (lrdynamics.studies.ledger): the catalog's claims are well declared,
each verdict rule can give each verdict, and the rate and CI estimators recover known
answers on synthetic data."""

import inspect

import numpy as np
import pytest
import xarray as xr

from lrdynamics.config.schema import load_schema, schema_defaults
from lrdynamics.studies import ANALYSES, CLAIMS, FIGURES, ledger, load
from lrdynamics.studies.adaptive_sde.analysis import sqrt_rule_advantage
from lrdynamics.studies.intrinsic_lr.small_lr import welch_interval
from lrdynamics.studies.sde_validity.svag import convergence_rate

CRITERIA = load_schema()["properties"]["claims"]["properties"]["criteria"]["properties"]


@pytest.mark.parametrize("claim", CLAIMS.values(), ids=list(CLAIMS))
def test_claim_declaration(claim):
    assert claim.figure in FIGURES
    assert set(claim.analyses) <= set(ANALYSES)
    params = inspect.signature(load(claim.measure)).parameters.values()
    keywords = sorted(p.name for p in params if p.kind == p.KEYWORD_ONLY)
    declared = sorted(schema_defaults(CRITERIA[claim.id])) if claim.id in CRITERIA else []
    if not any(p.kind == p.VAR_KEYWORD for p in params):  # wrappers pass **criterion on
        assert keywords == declared, "the schema's criteria are the measure's keyword arguments"
    for key in declared:
        assert CRITERIA[claim.id]["properties"][key]["description"].strip(), "every threshold has its reason"


def test_every_criterion_belongs_to_a_claim():
    assert set(CRITERIA) <= set(CLAIMS)


def test_judge_interval_gives_each_verdict():
    kw = dict(target=-1.0, max_half_width=0.3, criterion="c")
    assert ledger.judge_interval("q", -0.9, -1.1, -0.7, **kw).verdict == ledger.CONFIRMED
    m = ledger.judge_interval("q", -0.5, -0.7, -0.3, **kw)
    assert m.verdict == ledger.NOT_CONFIRMED and "outside" in m.reason
    m = ledger.judge_interval("q", -0.5, -1.5, 0.5, **kw)
    assert m.verdict == ledger.NOT_RESOLVED and "half-width" in m.reason


def test_equivalence_band_gives_each_verdict():
    kw = dict(tolerance=0.01, criterion="c")
    assert ledger.judge_equivalence_band("q", 0, -0.005, 0.005, **kw).verdict == ledger.CONFIRMED
    assert ledger.judge_equivalence_band("q", 0.05, 0.04, 0.06, **kw).verdict == ledger.NOT_CONFIRMED
    assert ledger.judge_equivalence_band("q", 0.01, -0.005, 0.02, **kw).verdict == ledger.NOT_RESOLVED
    # one-sided: being far above is still "reaching"
    assert ledger.judge_equivalence_band("q", 0.05, 0.04, 0.06, one_sided=True, **kw).verdict == ledger.CONFIRMED
    assert ledger.judge_equivalence_band("q", 0, np.nan, np.nan, **kw).verdict == ledger.NOT_RESOLVED


def test_a_verdict_other_than_confirmed_needs_its_reason():
    with pytest.raises(ValueError, match="reason"):
        ledger.Measurement("q", 1.0, "c", ledger.NOT_CONFIRMED)
    with pytest.raises(ValueError, match="verdict"):
        ledger.Measurement("q", 1.0, "c", "probably")


def merge_row(time, lo, hi, peak, last=1000, switch=100, lam=1e-2):
    return xr.Dataset(
        {
            "history_equilibrium_step": time,
            "history_equilibrium_step_ci_low": lo,
            "history_equilibrium_step_ci_high": hi,
            "history_peak_ratio": peak,
            "history_switch_step": switch,
            "history_intrinsic_lr": lam,
        },
        coords={"step": np.arange(0, last + 1, 10)},
    )


def test_merge_outcome_gives_each_verdict():
    kw = dict(min_peak_ratio=2.0, min_relaxations=4.0)
    verdict, _, value, ci = ledger.merge_outcome(merge_row(300.0, 250.0, 400.0, 5.0), **kw)
    assert verdict == ledger.CONFIRMED and value == pytest.approx(2.0) and ci == pytest.approx((1.5, 3.0))
    verdict, reason, *_ = ledger.merge_outcome(merge_row(np.nan, np.nan, np.inf, 5.0), **kw)
    assert verdict == ledger.NOT_CONFIRMED and "9 relaxation times" in reason
    verdict, reason, *_ = ledger.merge_outcome(merge_row(np.nan, np.nan, np.inf, 5.0, last=300), **kw)
    assert verdict == ledger.NOT_RESOLVED and reason.startswith("needs 500 steps")
    verdict, reason, *_ = ledger.merge_outcome(merge_row(300.0, 250.0, 400.0, 1.3), **kw)
    assert verdict == ledger.NOT_RESOLVED and "apart by only 1.3x" in reason  # never parted: no evidence
    verdict, reason, *_ = ledger.merge_outcome(merge_row(300.0, 250.0, np.inf, 5.0), **kw)
    assert verdict == ledger.NOT_RESOLVED and "never meet" in reason


def synthetic_svag(power, seeds=400, noise=0.01, steps=20, seed=0):
    rng = np.random.default_rng(seed)
    shape = np.linspace(0.2, 1.0, steps)
    return [0.8 + 0.1 * shape / l**power + noise * rng.standard_normal((seeds, steps)) for l in (1, 2, 4, 8)]


@pytest.mark.parametrize("power", [1.0, 0.5])
def test_convergence_rate_recovers_the_exponent(power):
    rate = convergence_rate(synthetic_svag(power), [1, 2, 4, 8], resamples=200)
    assert rate["lo"] <= power <= rate["hi"]
    assert (rate["hi"] - rate["lo"]) / 2 < 0.3
    assert (rate["delta"] > 3 * rate["floor"]).all()


def test_convergence_rate_sees_seed_noise():
    """Curves equal in expectation: the distances are seed noise, at their floor."""
    curves = synthetic_svag(1.0, seeds=8, noise=0.05)
    curves = [c - 0.1 * np.linspace(0.2, 1.0, 20) / l for c, l in zip(curves, (1, 2, 4, 8))]
    rate = convergence_rate(curves, [1, 2, 4, 8], resamples=50)
    assert (rate["delta"] < 3 * rate["floor"]).all()


def test_sqrt_rule_advantage_sign_and_seeds():
    rng = np.random.default_rng(0)
    kappas = [1, 2, 4, 8]
    finals = {}
    for rule, slope in (("none", 0.01), ("linear", 0.02), ("sqrt", 0.0)):
        for k in kappas:
            finals["adam", rule, k] = 0.85 - slope * np.log2(k) + 0.002 * rng.standard_normal(16)
    out = sqrt_rule_advantage(finals, ["adam"], kappas, resamples=200)
    assert float(out.sqrt_spread_advantage_ci_low[0]) > 0 and int(out.scaling_seeds[0]) == 16
    single = {key: v[:1] for key, v in finals.items()}
    out = sqrt_rule_advantage(single, ["adam"], kappas, resamples=200)
    assert np.isnan(float(out.sqrt_spread_advantage_ci_low[0])) and int(out.scaling_seeds[0]) == 1


def test_welch_interval_matches_the_t_test():
    from scipy import stats

    a, b = np.array([0.80, 0.81, 0.79, 0.82]), np.array([0.84, 0.83, 0.85, 0.86])
    diff, lo, hi = welch_interval(a, b)
    assert diff == pytest.approx(-0.04)
    assert lo < diff < hi < 0
    assert stats.ttest_ind(a, b, equal_var=False).pvalue < 0.05


def test_ledger_marks_claims_of_unconfigured_figures():
    rows = ledger.claim_rows({}, {}, [], "test")
    assert len(rows) == len(CLAIMS)
    assert {r["verdict"] for r in rows} == {ledger.NOT_RESOLVED}
    assert all("not measured in this config" in r["reason"] for r in rows)


def test_ledger_table_round_trips_through_csv_and_readme(tmp_path):
    rows = [
        {**r, "verdict": ledger.CONFIRMED, "reason": "", "quantity": "q", "value": 1.0, "ci_low": 0.9, "ci_high": 1.1}
        for r in ledger.claim_rows({}, {}, [], "demo")
    ]
    table = ledger.ledger_table(rows)
    ledger.write_csv(table, tmp_path / "claims.csv")
    back = ledger.read(tmp_path / "claims.csv")
    assert list(back.columns) == list(ledger.COLUMNS) and len(back) == len(CLAIMS)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- claims: results/claims.csv -->\nstale table\n<!-- /claims -->\nend\n")
    ledger.write_readme(readme, back, "results/claims.csv")
    text = readme.read_text()
    assert "stale table" not in text and text.count("**confirmed**") == len(CLAIMS) and text.endswith("end\n")
    assert f"{len(CLAIMS)} claims: {len(CLAIMS)} confirmed, 0 not confirmed, 0 not resolved." in text
    ds = ledger.ledger_dataset(back)
    assert ds.sizes["claim"] == len(CLAIMS)


def test_judge_positive_gives_each_verdict():
    assert ledger.judge_positive(0.01, 0.03, 0.02)[0] == ledger.CONFIRMED
    assert ledger.judge_positive(-0.03, -0.01, 0.02)[0] == ledger.NOT_CONFIRMED
    assert ledger.judge_positive(-0.01, 0.01, 0.02)[1].endswith("includes 0")
    assert "half-width" in ledger.judge_positive(0.01, 0.2, 0.02)[1]
