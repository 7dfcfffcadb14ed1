"""A conforming test plugin: no torch at import, classes named by import string."""
import genzoo


@genzoo.hookimpl
def genzoo_architectures():
    return [{"name": "kit-image", "family": "kitimg", "target": "kitgood.models:KitImage",
             "summary": "tiny MLP VAE for the kit's tests"},
            {"name": "kit-labels", "family": "kitimg", "target": "kitgood.models:KitLabels",
             "summary": "tiny class-conditional MLP VAE for the kit's tests"},
            {"name": "kit-text", "family": "kittext", "target": "kitgood.models:KitText",
             "summary": "byte bigram LM for the kit's tests"},
            {"name": "kit-audio", "family": "kitaudio", "target": "kitgood.models:KitAudio",
             "summary": "tiny MLP VAE over waveforms (audio) for the kit's tests"},
            {"name": "kit-audio-card", "family": "kitaudio",
             "target": "kitgood.models:KitAudioOwnCard",
             "summary": "kit-audio with the family's own card fields"}]
