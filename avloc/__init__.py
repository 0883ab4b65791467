"""avloc: self-supervised audio-visual sound-source localisation (FNAC)."""

__version__ = "0.1.0"


def localize(*args, **kwargs):
    """Where the sound comes from in a video, over time; see ``avloc.localization.api.localize``."""
    from avloc.localization.api import localize as _localize

    return _localize(*args, **kwargs)
