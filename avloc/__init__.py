"""avloc: self-supervised audio-visual sound-source localisation (FNAC)."""

__version__ = "0.1.0"
