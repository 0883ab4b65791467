"""Running a trained model on anyone's video: where the sound comes from, over time.

``avloc.localize(...)`` (``api.localize``) for one input in a notebook; ``run.run_localize``
behind ``avloc localize`` for many. The pieces: ``source`` (decoding), ``measure`` (audio
windows, spectrograms, what is read off a map), ``engine`` (the streamed pass), ``render``
(overlay video, contact sheet), ``outputs`` (tables, completion, resume).
"""

from avloc.localization.api import localize
from avloc.localization.engine import LocalizeResult

__all__ = ["localize", "LocalizeResult"]
