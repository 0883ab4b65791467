"""With the ``tensorboard`` extra installed, a run's scalars land where the README says and read back."""

from __future__ import annotations

import json

import pytest

from avloc.training.logs import MetricsLog


def test_metrics_go_to_tensorboard_and_read_back(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed: pip install -e '.[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLog(tmp_path, "on")
    assert log.tb_status == "on"
    for step, loss in [(1, 0.5), (2, 0.25)]:
        log.write("train", step=step, loss=loss)
    log.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    events = acc.Scalars("train/loss")
    assert [(e.step, e.value) for e in events] == [(1, 0.5), (2, 0.25)]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 0.5), (2, 0.25)]
