"""The plugin author's kit: the conformance checks behind ``genzoo.testing``
(``conformance``, ``config``, ``conditions``, ``train``) and ``genzoo new-plugin``'s
``scaffold`` with its ``templates/``."""
