"""Where a model's misses on a synthetic copy come from: AP50 and pointing by the share of the
sounding object that other objects hide.

    avloc synth --out /tmp/copy --benchmark vggss --items 200 --classes 8 --seed 11
    avloc evaluate --benchmark vggss --data-root /tmp/copy/vggss --checkpoint best.pt --out /tmp/eval
    python benchmarks/misses_by_hidden.py /tmp/eval /tmp/copy/vggss
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> int:
    import pyarrow.parquet as pq

    from avloc.evaluation.object_prior import misses_by_hidden
    from avloc.tools.synth.layouts import MANIFEST_NAME

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("evaluation", type=Path, help="an `avloc evaluate --out` folder (per_sample.parquet)")
    parser.add_argument("copy", type=Path, help="the `avloc synth` copy it scored (holds synth_benchmark.json)")
    args = parser.parse_args(argv)
    per_sample = pq.read_table(args.evaluation / "per_sample.parquet").to_pydict()
    items = json.loads((args.copy / MANIFEST_NAME).read_text())["items"]
    rows = misses_by_hidden(per_sample, items)
    if not rows:
        print(f"no item of {args.copy} records hidden_shares (a copy written before they were recorded?)")
        return 1
    print("| sounding object hidden | items | AP50 x100 | pointing x100 |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['hidden']} | {r['n']} | {100 * r['ap50']:.1f} | {100 * r['pointing']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
