"""The one error hierarchy of genzoo.

Every message is written for the person at the terminal: it says what went wrong and what to
do next, on one line. The CLI prints ``str(error)`` and exits 1; nothing else is shown unless
``--debug`` is given.
"""
from __future__ import annotations


class GenzooError(Exception):
    """Base class: a failure the user can act on (bad name, bad file, bad option)."""


class UnknownModelError(GenzooError, LookupError):
    """No card, folder or Hub id matches the name given."""


class PluginMissingError(GenzooError):
    """The model's architecture comes from a plugin package that is not installed or failed."""


class PluginError(GenzooError):
    """A plugin failed to import or one of its hooks raised (fatal only in strict mode)."""


class RegistryError(GenzooError):
    """A catalog file or a model card is malformed, or two sources define one name."""


class IntegrityError(GenzooError):
    """A file's sha256 does not match its card: the file is refused, never used."""


class UnsafePathError(GenzooError):
    """A file name escapes its folder (``..`` or an absolute path)."""


class WeightsError(GenzooError):
    """A model folder is missing, corrupt, or not in the genzoo/safetensors format."""


class HubError(GenzooError):
    """The Hugging Face Hub (or its cache, offline) could not provide a file."""


class DataError(GenzooError):
    """A dataset path is missing, empty, undecodable or of the wrong shape."""


class OptionError(GenzooError, ValueError):
    """A sampling, training or evaluation option is out of range or unknown for the family."""


class TrainingDivergedError(GenzooError):
    """The loss became NaN or Inf; the last good checkpoint was kept."""


class OutputError(GenzooError):
    """An output (samples, a finetune folder, a card) cannot be written where it was asked."""


class SampleError(GenzooError):
    """A model produced unusable samples (NaN or Inf); nothing was written."""
