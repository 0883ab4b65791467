"""The options of one localisation run (``avloc localize``), checked once, every problem listed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

from avloc.localization.source import IMAGE_EXTENSIONS
from avloc.metrics import UPSAMPLE_MODES
from avloc.utils.options import CommandOptions, choice_problem, range_problem, writable_folder_problems
from avloc.utils.system import DEVICE_CHOICES


@dataclasses.dataclass(frozen=True)
class LocalizeOptions(CommandOptions):
    inputs: tuple = ()
    checkpoint: Optional[Path] = None
    out: Path = Path("localize")
    audio: Optional[Path] = None  # with one image input: the sound to localise in it
    every: float = 0.5
    image_size: int = 224
    batch_size: int = 16
    device: str = "auto"
    silence_db: float = -60.0
    upsample: str = "bicubic"
    json_only: bool = False
    max_buffer_mb: float = 512.0
    progress: bool = True
    force: bool = False  # redo inputs whose outputs are complete

    def problems(self) -> List[str]:
        found = []
        if not self.inputs:
            found.append("give at least one INPUT (a video, a folder of videos, or an image with --audio)")
        for path in map(Path, self.inputs):
            if not path.exists():
                found.append(f"input not found: {path}")
        if self.checkpoint is None:
            found.append("--checkpoint is required")
        elif not Path(self.checkpoint).is_file():
            found.append(f"--checkpoint {self.checkpoint} is not a file")
        if self.audio is not None:
            if len(self.inputs) != 1 or Path(self.inputs[0]).suffix.lower() not in IMAGE_EXTENSIONS:
                found.append(f"--audio goes with exactly one image INPUT ({', '.join(IMAGE_EXTENSIONS)})")
            if not Path(self.audio).is_file():
                found.append(f"--audio {self.audio} is not a file")
        if not self.every > 0:
            found.append(f"--every must be > 0 seconds; got {self.every!r}")
        found += range_problem("--image-size", self.image_size, 32)
        found += range_problem("--batch-size", self.batch_size, 1)
        found += range_problem("--max-buffer-mb", self.max_buffer_mb, 1)
        found += choice_problem("--device", self.device if not str(self.device).startswith("cuda:") else "cuda",
                                DEVICE_CHOICES)
        found += choice_problem("--upsample", self.upsample, UPSAMPLE_MODES)
        return found + writable_folder_problems("--out", self.out)
