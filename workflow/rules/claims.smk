# results/claims.csv: the claims ledger (lrdynamics.studies.ledger), one row per claim of
# the study catalog, from the analysis files alone; its HTML table is the report's section.
rule claims_ledger:
    input:
        layout.claim_analysis_paths(CONFIG),
    output:
        csv=f"{RESULTS}/claims.csv",
        nc=f"{RESULTS}/claims.nc",
        html=report(
            f"{RESULTS}/claims.html",
            caption="../report/claims.rst",
            category="Claims ledger",
            labels={"table": "claims ledger"},
        ),
    log:
        f"{RESULTS}/logs/claims.log",
    localrule: True
    conda:
        "../../environment.yml"
    params:
        criteria=CONFIG["claims"]["criteria"],
        measured=layout.measured_claims(CONFIG),
        measured_in=CONFIG["claims"]["measured_in"],
        rehearsal=REHEARSAL,
    script:
        "../scripts/claims_ledger.py"
