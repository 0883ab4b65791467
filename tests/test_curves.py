"""curves.png: drawn from metrics.jsonl after every validation, atomically, in the run folder (a real
training run's curves.png is checked in test_train_run.py, which shares that run with its other tests)."""

from __future__ import annotations

from PIL import Image

from avloc.training.curves import write_curves
from avloc.training.logs import MetricsLog


def test_curves_from_rows_with_and_without_boxes(tmp_path):
    log = MetricsLog(tmp_path, "off")
    for step in range(1, 6):
        log.write("train", step=step, loss=3.0 / step, contrastive=2.0 / step, fns1=0.01, tns=0.02, fns2=0.01)
    log.write("val", step=5, val_loss=2.5, val_ap50=0.4, val_auc=0.35, baseline_centre_ap50=0.2,
              baseline_centre_auc=0.25, baseline_whole_ap50=0.0, baseline_whole_auc=0.1, val_silence_ap50=0.1)
    first = write_curves(tmp_path)
    before = first.stat().st_mtime_ns
    log.write("val", step=10, val_loss=2.0)  # a split without boxes: losses only
    assert write_curves(tmp_path).stat().st_mtime_ns >= before
    with Image.open(first) as img:
        assert img.size == (1300, 380)
