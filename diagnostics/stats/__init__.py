"""Statistics shared by the checks: two-sample drift statistics per column (``drift``, with the KS
p-values in ``ks_pvalues``), the multiple-testing corrections (``multiple_testing``) and the stable
projections of embeddings they run on (``projection``). Pure: numpy, scipy and pydantic only."""
