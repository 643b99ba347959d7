"""One incident, shared by every stage: the model and its versioned conf (``model``, ``conf``), the
result vocabulary every check speaks (``results``), a phase's ranked summary (``summary``) and the
artifact store its results are written to and read back from (``store``)."""
