"""A plugin shipping a card file whose card reuses a first-party name (gan-mnist)."""
import genzoo


@genzoo.hookimpl
def genzoo_model_cards():
    return ["cards.yaml"]  # relative: taken from this module's folder
