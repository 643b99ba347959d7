"""Statistics shared by the checks: two-sample drift statistics per column (``drift``) and the stable
projections of embeddings they run on (``projection``). Pure: numpy, scipy and pydantic only."""
