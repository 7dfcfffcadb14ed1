"""Models as data: cards (pure data), the registry (the one merge of every catalog), the Hub
and local sources weights come from (``hub``, ``hub_http``), sha256 ``integrity`` and the
download ``cache``. Nothing here imports torch or knows a family."""
