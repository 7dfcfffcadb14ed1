"""The plugin author's kit: the conformance checks behind ``genzoo.testing``
(``conformance``, ``config``, ``conditions``, ``devices``, ``train``, ``learning``) and
``genzoo new-plugin``'s ``scaffold`` with its ``templates/``."""
