"""The study's results for people: comparison tables, figures and the paper's published values.

Modules
-------
summary
    Seeds averaged per method, differences from the baseline, paired tests with Holm's correction.
statistics
    The paired tests over queries, over seeds, and with both as crossed random effects.
claims
    The paper's claims as verdict rules over a study's summaries (claims.csv, claims.md).
tables
    The comparison as CSV, Markdown, HTML and LaTeX (booktabs).
plots
    Index size vs effectiveness, training loss, kept-token diagnostics (matplotlib).
diagnostics
    Which tokens each pruned index kept, and at which passage positions.
paper
    Lassance et al. (2022)'s published numbers, labelled as theirs.
report_files
    Each report file from the paths its rule hands over: what the ``tokenprune`` report sub-commands run.
"""

__all__ = []
