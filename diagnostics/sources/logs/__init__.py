"""Log lines and log queries (``records``), read from JSON-lines files (``files``) or an
Elasticsearch index (``elasticsearch``), independent of the check that classifies them."""
