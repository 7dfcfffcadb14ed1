"""Evaluation of sample quality and diversity: ``metrics`` (``genzoo.evaluate``: FD, KID,
precision/recall, coverage, a family's own metrics), ``features`` (feature networks, found
through the ``genzoo_feature_nets`` hook) and ``refstats`` (cached reference statistics)."""
