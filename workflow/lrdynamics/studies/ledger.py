"""The claims ledger: one row per claim of the five papers (``lrdynamics.studies.CLAIMS``),
measured from the analysis files alone, with the workflow's own verdict.

A verdict is one of three (docs/science.md section 8):

- ``confirmed``: the measurement is as precise as the claim's criterion requires, and
  meets it;
- ``not confirmed``: it is that precise, and misses;
- ``not resolved``: it is not precise enough, or the run is too short, or the claim was
  not measured in this config; the ``reason`` says which, in numbers.

Each claim's criterion (its thresholds and the precision a measurement needs) is its
config entry ``claims.<id>``; the schema gives every default with its reason. The rule
``claims_ledger`` writes ``results/claims.csv``, ``results/claims.nc`` and
``results/claims.html`` (the report's table); ``python -m lrdynamics.studies.ledger show``
prints a ledger, ``... readme`` writes it into ``README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from lrdynamics.engine.files import atomic_path
from lrdynamics.studies import CLAIMS, load

CONFIRMED, NOT_CONFIRMED, NOT_RESOLVED = "confirmed", "not confirmed", "not resolved"
VERDICTS = (CONFIRMED, NOT_CONFIRMED, NOT_RESOLVED)
COLUMNS = (
    "id", "paper", "claim", "paper_value", "quantity", "value", "ci_low", "ci_high",
    "criterion", "verdict", "reason", "measured_in", "figure",
)  # fmt: skip


@dataclass(frozen=True)
class Measurement:
    """What a claim's ``measure`` returns: the measured ``value`` of ``quantity`` with its
    uncertainty (``ci_low``..``ci_high``, NaN where none), the ``criterion`` in words with
    its numbers, the verdict and, for every verdict but ``confirmed``, the reason."""

    quantity: str
    value: float
    criterion: str
    verdict: str
    reason: str = ""
    ci_low: float = math.nan
    ci_high: float = math.nan

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")
        if self.verdict != CONFIRMED and not self.reason:
            raise ValueError(f"a {self.verdict!r} verdict needs its reason ({self.quantity})")


def fmt(x: float, digits: int = 3) -> str:
    """A number for a reason or criterion text (3 significant digits)."""
    return "nan" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def judge_interval(
    quantity: str, value: float, ci_low: float, ci_high: float, *, target: float, max_half_width: float, criterion: str
) -> Measurement:
    """``target`` inside the CI, with the CI's half-width at most ``max_half_width``: a CI
    wider than that cannot refute the target, so it resolves nothing."""
    half = (ci_high - ci_low) / 2
    if not np.isfinite(half) or half > max_half_width:
        reason = f"CI half-width {fmt(half)} > the {fmt(max_half_width)} needed"
        return Measurement(quantity, value, criterion, NOT_RESOLVED, reason, ci_low, ci_high)
    if ci_low <= target <= ci_high:
        return Measurement(quantity, value, criterion, CONFIRMED, "", ci_low, ci_high)
    reason = f"{fmt(target)} is outside the CI {fmt(ci_low)}..{fmt(ci_high)}"
    return Measurement(quantity, value, criterion, NOT_CONFIRMED, reason, ci_low, ci_high)


def not_measured(quantity: str, criterion: str, reason: str) -> Measurement:
    return Measurement(quantity, math.nan, criterion, NOT_RESOLVED, reason)


def judge_equivalence_band(
    quantity: str,
    value: float,
    ci_low: float,
    ci_high: float,
    *,
    tolerance: float,
    criterion: str,
    one_sided: bool = False,
) -> Measurement:
    """An equivalence test: confirmed when the whole CI lies within +-``tolerance`` (with
    ``one_sided``: above -``tolerance``), not confirmed when it lies wholly outside, else
    not resolved (the CI straddles the bound: too imprecise to say)."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return Measurement(quantity, value, criterion, NOT_RESOLVED, "no CI (fewer than 2 seeds)", ci_low, ci_high)
    inside = ci_low >= -tolerance and (one_sided or ci_high <= tolerance)
    outside = ci_high < -tolerance or (not one_sided and ci_low > tolerance)
    if inside:
        return Measurement(quantity, value, criterion, CONFIRMED, "", ci_low, ci_high)
    if outside:
        bound = f">= {fmt(-tolerance)}" if one_sided else f"+-{fmt(tolerance)}"
        reason = f"the CI {fmt(ci_low)}..{fmt(ci_high)} lies outside {bound}"
        return Measurement(quantity, value, criterion, NOT_CONFIRMED, reason, ci_low, ci_high)
    reason = f"the CI {fmt(ci_low)}..{fmt(ci_high)} straddles a bound of +-{fmt(tolerance)}: too imprecise"
    return Measurement(quantity, value, criterion, NOT_RESOLVED, reason, ci_low, ci_high)


def judge_positive(lo: float, hi: float, max_half_width: float) -> tuple[str, str]:
    """(verdict, reason) for "the quantity is > 0" from its CI: wholly below 0 refutes it;
    wider than +-``max_half_width`` or straddling 0 resolves nothing; wholly above confirms."""
    half = (hi - lo) / 2
    if hi < 0:
        return NOT_CONFIRMED, f"CI {fmt(lo)}..{fmt(hi)} lies below 0"
    if not half <= max_half_width:
        return NOT_RESOLVED, f"CI {fmt(lo)}..{fmt(hi)}, half-width {fmt(half)} > {fmt(max_half_width)}"
    if lo > 0:
        return CONFIRMED, ""
    return NOT_RESOLVED, f"CI {fmt(lo)}..{fmt(hi)} includes 0"


def merge_outcome(row: xr.Dataset, *, min_peak_ratio: float, min_relaxations: float) -> tuple[str, str, float, tuple]:
    """The function-space rule of section 3 on one pair of ensembles (a row of
    ``function_space_distances``): (verdict, reason, time after the switch in relaxation
    times, its CI). The ensembles must first be measurably apart after the switch (peak
    D/F >= ``min_peak_ratio``), else the test could not fail; no crossing counts against
    the claim only when the run lasted ``min_relaxations`` relaxation times after the switch."""
    lam = float(row.history_intrinsic_lr)
    switch = float(row.history_switch_step)

    def units(step):
        return (step - switch) * lam

    time = float(row.history_equilibrium_step)
    ci = (units(float(row.history_equilibrium_step_ci_low)), units(float(row.history_equilibrium_step_ci_high)))
    peak = float(row.history_peak_ratio)
    last = int(row.step.max())
    if not peak >= min_peak_ratio:
        reason = f"apart by only {fmt(peak)}x the floor after the switch (needs {fmt(min_peak_ratio)}x)"
        return NOT_RESOLVED, reason, units(time), ci
    if np.isfinite(time):
        if not np.isfinite(ci[1]):
            return NOT_RESOLVED, "over 2.5% of the seed resamples never meet", units(time), ci
        return CONFIRMED, "", units(time), ci
    if units(last) >= min_relaxations:
        return NOT_CONFIRMED, f"still apart {fmt(units(last))} relaxation times after the switch", math.nan, ci
    needs = int(np.ceil(switch + min_relaxations / lam))
    reason = f"needs {needs} steps ({fmt(min_relaxations)} relaxation times after the switch), runs {last}"
    return NOT_RESOLVED, reason, math.nan, ci


def combine(parts: list[tuple[str, str, str]]) -> tuple[str, str]:
    """A claim of several parts, each (label, verdict, reason): not confirmed if any part
    misses, confirmed if all meet, else not resolved; the reason names each part's."""
    verdicts = [verdict for _, verdict, _ in parts]
    if NOT_CONFIRMED in verdicts:
        verdict = NOT_CONFIRMED
    else:
        verdict = CONFIRMED if verdicts and all(v == CONFIRMED for v in verdicts) else NOT_RESOLVED
    reason = "; ".join(f"{label}: {why}" for label, _, why in parts if why) if verdict != CONFIRMED else ""
    return verdict, reason


def claim_rows(
    analyses: dict[str, xr.Dataset],
    criteria: dict[str, dict],
    measured: list[str],
    measured_in: str,
    rehearsal: str = "",
) -> list[dict]:
    """Every claim of the catalog, in catalog order: measured when it is in ``measured``
    (``layout.measured_claims``: its figure is configured), from its analysis files. A
    rehearsal (``rehearsal``: its mark) measures every claim, and resolves none."""
    rows = []
    for claim in CLAIMS.values():
        if claim.id not in measured:
            m = not_measured("", "", f"not measured in this config (it draws no {claim.figure} figure)")
        else:
            m = load(claim.measure)({name: analyses[name] for name in claim.analyses}, **criteria.get(claim.id, {}))
            if rehearsal:
                m = dataclasses.replace(m, verdict=NOT_RESOLVED, reason=f"{rehearsal} (its own verdict: {m.verdict})")
        rows.append({
            "id": claim.id, "paper": claim.paper, "claim": claim.statement, "paper_value": claim.paper_value,
            "quantity": m.quantity, "value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high,
            "criterion": m.criterion, "verdict": m.verdict, "reason": m.reason,
            "measured_in": measured_in if claim.id in measured else "", "figure": claim.figure,
        })  # fmt: skip
    return rows


def open_analyses(paths) -> dict[str, xr.Dataset]:
    """Analysis files by name (``results/analysis/<name>.nc``), loaded and closed."""
    out = {}
    for path in paths:
        with xr.open_dataset(path) as ds:
            out[Path(path).stem] = ds.load()
    return out


def write_csv(table: pd.DataFrame, path) -> None:
    """The ledger as CSV (atomically: never half a file)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def write_html(table: pd.DataFrame, path) -> None:
    """The ledger as the report's HTML page (atomically)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(html(table))


def ledger_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(COLUMNS))


def ledger_dataset(table: pd.DataFrame) -> xr.Dataset:
    """The ledger as netCDF: one variable per column along ``claim``."""
    ds = xr.Dataset.from_dataframe(table.set_index("id").rename_axis("claim"))
    for name in ds.data_vars:
        if ds[name].dtype == object:
            ds[name] = ds[name].astype(str)
    ds.attrs["title"] = "Claims ledger: each claim of the five papers, measured, with the workflow's verdict"
    ds.attrs["verdicts"] = ", ".join(VERDICTS)
    return ds


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    return {v: int((table["verdict"] == v).sum()) for v in VERDICTS}


def counts_text(table: pd.DataFrame) -> str:
    """The count of each verdict, as "9 confirmed, 3 not confirmed, 8 not resolved"."""
    return ", ".join(f"{n} {v}" for v, n in verdict_counts(table).items())


def _number(x) -> str:
    return "" if pd.isna(x) else fmt(float(x))


def measured_text(row) -> str:
    if pd.isna(row["value"]):
        return ""
    ci = f" [{_number(row['ci_low'])}, {_number(row['ci_high'])}]" if not pd.isna(row["ci_low"]) else ""
    return f"{row['quantity']} = {_number(row['value'])}{ci}"


def markdown(table: pd.DataFrame) -> str:
    """The ledger as a Markdown table (README, ``show``), with the count of each verdict."""
    cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [
        "| claim | paper | measured | criterion | verdict | reason | figure |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for _, row in table.iterrows():
        verdict = f"**{row['verdict']}**" if row["verdict"] == CONFIRMED else row["verdict"]
        paper = row["paper"] + (f" ({row['paper_value']})" if row["paper_value"] else "")
        lines.append(
            "| " + " | ".join(cell(x) for x in (
                f"`{row['id']}`: {row['claim']}", paper, measured_text(row), row["criterion"], verdict,
                row["reason"], f"`{row['figure']}`",
            )) + " |"
        )  # fmt: skip
    return "\n".join(lines) + f"\n\n{len(table)} claims: {counts_text(table)}.\n"


def html(table: pd.DataFrame) -> str:
    """The ledger as a standalone HTML page (the report's entry)."""
    shown = table.assign(measured=[measured_text(r) for _, r in table.iterrows()])
    shown = shown[["id", "paper", "claim", "paper_value", "measured", "criterion", "verdict", "reason",
                   "measured_in", "figure"]]  # fmt: skip
    return (
        "<html><head><meta charset='utf-8'><title>Claims ledger</title>"
        "<style>td,th{border:1px solid #bbb;padding:4px;vertical-align:top;font:13px sans-serif}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h2>Claims ledger</h2><p>{len(table)} claims: {counts_text(table)}.</p>"
        + shown.to_html(index=False, escape=True, na_rep="")
        + "</body></html>\n"
    )


def read(path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""]).fillna({c: "" for c in (
        "paper_value", "quantity", "criterion", "reason", "measured_in")})  # fmt: skip


README_MARKER = re.compile(r"(<!-- claims: (?P<source>\S+) -->\n)(?P<body>.*?)(<!-- /claims -->)", re.S)


def write_readme(readme: Path, table: pd.DataFrame, source: str) -> None:
    """Replace the ledger between ``<!-- claims: SOURCE -->`` and ``<!-- /claims -->``."""
    text = readme.read_text()
    if not README_MARKER.search(text):
        raise SystemExit(f"{readme}: no '<!-- claims: ... -->' ... '<!-- /claims -->' block to write the ledger into")
    text = README_MARKER.sub(lambda m: f"<!-- claims: {source} -->\n{markdown(table)}<!-- /claims -->", text)
    readme.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrdynamics.studies.ledger", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="print a ledger (results/claims.csv) as a table")
    show.add_argument("csv", nargs="?", default="results/claims.csv")
    readme = sub.add_parser("readme", help="write a ledger into README.md between its claims markers")
    readme.add_argument("readme", type=Path)
    readme.add_argument("csv", nargs="?", default="results/claims.csv")
    args = parser.parse_args(argv)
    if not Path(args.csv).exists():
        print(f"{args.csv} does not exist: run snakemake first", file=sys.stderr)
        return 1
    table = read(args.csv)
    if args.command == "show":
        print("Claims ledger (" + args.csv + ")\n")
        for _, row in table.iterrows():
            line = f"  {row['verdict']:<14} {row['id']:<28} {measured_text(row)}"
            print(line + (f"\n  {'':<14} {'':<28} reason: {row['reason']}" if row["reason"] else ""))
        print("\n" + counts_text(table))
    else:
        write_readme(args.readme, table, args.csv)
        print(f"wrote the ledger of {args.csv} into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
