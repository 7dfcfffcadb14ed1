"""genzoo's own modalities — image, text, audio — registered through the ``genzoo_modalities``
hook (``genzoo.plugins.core``) exactly as a third party registers its own. Each is a
``genzoo.samples.Modality`` subclass: core asks it, never its name."""
