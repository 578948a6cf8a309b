"""Snakemake script of rule claims_ledger: every claim of the study catalog measured from
the analysis files (``lrdynamics.studies.ledger``)."""

import logging

from lrdynamics.engine.logs import setup_logging
from lrdynamics.engine.runfile import write_atomic
from lrdynamics.studies import ledger

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
log = logging.getLogger("lrdynamics.claims")
analyses = ledger.open_analyses(snakemake.input)  # noqa: F821
p = snakemake.params  # noqa: F821
table = ledger.ledger_table(ledger.claim_rows(analyses, p.criteria, p.measured, p.measured_in, p.rehearsal))
out = snakemake.output  # noqa: F821
ledger.write_csv(table, out.csv)
write_atomic(ledger.ledger_dataset(table), out.nc)
ledger.write_html(table, out.html)
for _, row in table.iterrows():
    log.info(
        "%s: %s %s%s",
        row["id"],
        row["verdict"],
        ledger.measured_text(row),
        f" ({row['reason']})" if row["reason"] else "",
    )
log.info("%s", ledger.counts_text(table))
