"""Models as data: cards (pure data), the registry (the one merge of every catalog), the Hub
and local sources weights come from (``hub``, ``hub_http``; ``hub_files``: an uncarded Hub
repository's chosen files, pinned), sha256 ``integrity`` and the download ``cache``. Nothing here imports torch or knows a family."""
