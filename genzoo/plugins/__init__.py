"""Plugin discovery: the pluggy ``manager`` over the ``genzoo`` entry points (``entries``),
which records each plugin's architectures, feature nets and errors; ``core`` is genzoo's own
plugin. The manager discovers and records; the catalog merges cards."""
from genzoo.plugins.manager import (PluginInfo, PluginManager, architectures, detect_arch,
                                    feature_nets, get_manager, load_arch_class, plugins, reset)

__all__ = ["PluginInfo", "PluginManager", "architectures", "detect_arch", "feature_nets",
           "get_manager", "load_arch_class", "plugins", "reset"]
