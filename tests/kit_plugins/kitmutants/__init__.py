"""A test plugin of planted contract violations, one architecture per violation (see models.py).

Its hook also breaks the registration contract on purpose: it imports numpy (a heavy module)
when genzoo asks for its architectures."""
import genzoo

MUTANTS = {
    "kit-unsquashed": "KitUnsquashed",      # raw output leaves [0, 1] once trained
    "kit-hidden-pickle": "KitHiddenPickle",  # a pickle under a .dat suffix
    "kit-old-pickle": "KitOldPickle",        # a protocol-0 pickle read with pickle.loads
    "kit-forgetful": "KitForgetful",        # load resets a trained parameter
    "kit-value-error": "KitValueError",     # a bad option value raises ValueError
    "kit-inert-config": "KitInertConfig",   # a config value that builds nothing
    "kit-half-trained": "KitHalfTrained",   # the encoder is detached: never trained
    "kit-deaf": "KitDeaf",                  # the loss ignores the batch
    "kit-bright": "KitBright",              # samples 1.5x too bright (clamped)
    "kit-inverted": "KitInverted",          # samples inverted and halved
    "kit-frozen-decoder": "KitFrozenDecoder",  # only the encoder is staged
    "kit-ignored-option": "KitIgnoredOption",  # a declared option generate never reads
    "kit-inert-option": "KitInertOption",   # the same, declared affects_output=False
    "kit-text-merged": "KitTextMerged",     # merged batches give other texts (argmax ties)
    "kit-audio-loud": "KitAudioLoud",       # waveforms leave [-1, 1]
    "kit-audio-flat": "KitAudioFlat",       # waveforms (n, T) without their channel axis
    "kit-smell": "KitSmell",                # a modality nothing registers
}


@genzoo.hookimpl
def genzoo_architectures():
    import numpy  # noqa: F401 - the violation under test: a heavy import at registration
    return [{"name": name, "family": "kitmut", "target": f"kitmutants.models:{cls}"}
            for name, cls in MUTANTS.items()]
