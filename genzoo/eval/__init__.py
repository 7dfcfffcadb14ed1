"""Evaluation of sample quality and diversity, for any modality: ``metrics``
(``genzoo.evaluate``: FD, KID, precision/recall, coverage, distinct-n), ``run`` (how samples are
drawn and measured, a family's own metrics), ``reference`` (the reference set, read as the
modality's data is read: core's image loader, the family's ``prepare_data``, a text file),
``features`` (feature networks, found through the ``genzoo_feature_nets`` hook), ``logmel``
(log-mel statistics for audio; not FAD) and ``refstats`` (cached reference statistics)."""
