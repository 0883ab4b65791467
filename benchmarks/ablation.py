"""In-memory training ablations: which FNAC settings learn from scratch, and which collapse?

A fast harness for comparing loss settings, not a second trainer: it renders shortcut-free
synthetic scenes straight into tensors (no video encoding, no shards), then trains avloc's own
FNACModel with avloc's own ``fnac_losses`` and scores the val split every epoch with the real,
silent and other-class audio (avloc.audio_controls), the embedding spread and the per-term
gradient norms (avloc.training.collapse). Runs can start from another run's checkpoint, so
every variant shares one contrastive warm-up.

    python benchmarks/ablation.py data WORK/set.pt --train 800 --val 200
    python benchmarks/ablation.py run WORK/set.pt WORK/contrastive.jsonl --weight 0 --save WORK/contrastive
    python benchmarks/ablation.py run WORK/set.pt WORK/w100.jsonl --weight 100 --load WORK/contrastive-e3.pt
    python benchmarks/ablation.py table WORK/*.jsonl --png curves.png
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

SILENCE = math.log(1e-7)  # the log-spectrogram value of digital silence (METHOD.md §1.1)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def make_split(n: int, n_classes: int, seed: int, image_size: int, looks: str, val: bool) -> dict:
    """Frames (train: at 1.1 x image_size for random crops; val: resized to image_size), log-spectrograms
    of 3 s of each clip's sound, labels and (val) ground-truth maps of the sounding object's box."""
    from PIL import Image

    from avloc import metrics
    from avloc.spectrogram import log_spectrogram
    from avloc.tools.synth.audio import render_mix, sample_sound
    from avloc.tools.synth.render import SceneRenderer, object_box
    from avloc.tools.synth.scene import sample_scene

    rng = np.random.default_rng(seed)
    side = int(1.1 * image_size)
    frames, specs, labels, gts = [], [], [], []
    for _ in range(n):
        cls = int(rng.integers(0, n_classes))
        scene = sample_scene(rng, [cls], n_classes, reference_time=1.5, distractor_looks=looks)
        if val:
            renderer = SceneRenderer(scene, 320, 240)
            frames.append(np.asarray(Image.fromarray(renderer.render(1.5)).resize((image_size, image_size),
                                                                                  Image.BICUBIC)))
            sounding = next(i for i, o in enumerate(scene.objects) if o.sounding)
            gts.append(metrics.gt_map_from_boxes([object_box(renderer, sounding, 1.5)]).astype(np.uint8))
        else:
            frames.append(SceneRenderer(scene, int(round(side * 4 / 3)), side).render(1.5))
        audio = render_mix([sample_sound(rng, cls)], 3.0, 16000, int(rng.integers(0, 2**31 - 1)))
        specs.append(log_spectrogram(torch.from_numpy(audio)).numpy().astype(np.float16))
        labels.append(cls)
    out = {"frames": np.stack(frames), "specs": np.stack(specs), "labels": np.array(labels)}
    if val:
        out["gt"] = np.stack(gts)
    return out


class Ablation:
    """One training run over an in-memory set; ``epoch()`` trains, ``validate()`` scores."""

    def __init__(self, data: dict, args):
        from avloc.model import FNACModel

        torch.manual_seed(args.seed)
        self.args = args
        self.train, self.val, self.size = data["train"], data["val"], data["image_size"]
        self.rng = np.random.default_rng(args.seed)
        self.model = FNACModel("none", dim=512, visual_dropout=0.0)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=args.lr, weight_decay=1e-4)
        self.terms = [t for t in args.terms.split(",") if t]
        self.step, self.start_epoch = 0, 0
        if args.load:
            state = torch.load(args.load, weights_only=False)
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["opt"])
            self.rng, self.step, self.start_epoch = state["rng"], state["step"], state["epoch"]

    def batch(self, idx) -> tuple:
        frames, s = self.train["frames"][idx], self.size
        crops = []
        for frame in frames:
            y = self.rng.integers(0, frame.shape[0] - s + 1)
            x = self.rng.integers(0, frame.shape[1] - s + 1)
            crop = frame[y:y + s, x:x + s]
            crops.append(np.ascontiguousarray(crop[:, ::-1] if self.rng.random() < 0.5 else crop))
        image = (torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255 - MEAN) / STD
        spec = torch.from_numpy(self.train["specs"][idx].astype(np.float32))
        for k in range(len(idx)):  # SpecAugment, silence-filled
            w = self.rng.integers(0, 10)
            f0 = self.rng.integers(0, spec.shape[1] - w + 1)
            spec[k, f0:f0 + w, :] = SILENCE
            w = self.rng.integers(0, 10)
            t0 = self.rng.integers(0, spec.shape[2] - w + 1)
            spec[k, :, t0:t0 + w] = SILENCE
        return image, (spec / 12).unsqueeze(1)

    def weight(self, epoch_float: float) -> float:
        a = self.args
        if epoch_float < a.warmup:
            return 0.0
        return a.weight * (min(1.0, (epoch_float - a.warmup) / a.ramp) if a.ramp > 0 else 1.0)

    def epoch(self, epoch: int, log) -> None:
        from avloc.losses import fnac_losses
        from avloc.training.collapse import term_gradient_norms

        n, b = len(self.train["labels"]), self.args.batch
        perm = self.rng.permutation(n)
        for k in range(n // b):
            w = self.weight(epoch + k / (n // b))
            image, spec = self.batch(perm[k * b:(k + 1) * b])
            visual, audio = self.model(image, spec)
            out = fnac_losses(visual, audio, impl="torch")
            loss = out["contrastive"] + sum(w * out[t] for t in self.terms)
            row = {"kind": "train", "step": self.step, "epoch": epoch + k / (n // b), "weight": w,
                   **{t: float(out[t].detach()) for t in ("contrastive", "fns1", "tns", "fns2")}}
            if self.step % self.args.probe_every == 0:
                weights = {t: (w if t in self.terms else 0.0) for t in ("fns1", "tns", "fns2")}
                row["grad"] = term_gradient_norms({t: out[t] for t in ("contrastive", "fns1", "tns", "fns2")},
                                                  weights, (visual, audio))
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.step += 1
            log(row)

    @torch.no_grad()
    def validate(self) -> dict:
        from avloc import metrics
        from avloc.audio_controls import shuffled_partners
        from avloc.training.collapse import embedding_spread

        self.model.eval()
        image = (torch.from_numpy(self.val["frames"]).permute(0, 3, 1, 2).float() / 255 - MEAN) / STD
        spec = torch.from_numpy(self.val["specs"].astype(np.float32)).unsqueeze(1) / 12
        parts = [self.model(image[i:i + 50], spec[i:i + 50]) for i in range(0, len(image), 50)]
        visual, audio = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        silent = self.model.audio(torch.full_like(spec[:1], SILENCE / 12))
        gt = torch.from_numpy(self.val["gt"].astype(np.float32))
        labels = list(self.val["labels"])

        def ap50(a):
            return float((metrics.per_sample_cious(torch.einsum("ndhw,nd->nhw", visual, a), gt) >= 0.5).mean())

        partners = torch.from_numpy(shuffled_partners(len(labels), labels))
        row = {"kind": "val", "step": self.step, "ap50_real": ap50(audio), "ap50_silence": ap50(silent.expand_as(audio)),
               "ap50_shuffled": ap50(audio[partners]), **embedding_spread(visual, audio)}
        self.model.train()
        return row

    def save(self, path: str, epoch: int) -> None:
        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "rng": self.rng,
                    "step": self.step, "epoch": epoch}, path)


def run(args) -> None:
    data = torch.load(args.data, weights_only=False)
    ablation = Ablation(data, args)
    t0 = time.perf_counter()
    with open(args.out, "a") as fh:
        def log(row):
            fh.write(json.dumps({**row, "seconds": time.perf_counter() - t0}) + "\n")

        log({"kind": "start", **vars(args)})
        for epoch in range(ablation.start_epoch, args.epochs):
            ablation.epoch(epoch, log)
            row = ablation.validate()
            log({**row, "epoch": epoch + 1})
            fh.flush()
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
            if args.save:
                ablation.save(f"{args.save}-e{epoch + 1}.pt", epoch + 1)


def table(paths: list, png) -> str:
    """Markdown: per run and epoch, AP50 with real / silent / other-class audio, spread, collapse."""
    lines = ["| run | epoch | AP50 real | silent | other-class | audio cos | visual cos | audio->image top-1 | collapsed |",
             "|---|---|---|---|---|---|---|---|---|"]
    curves = {}
    for path in paths:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
        name = Path(path).stem
        for r in (r for r in rows if r["kind"] == "val"):
            collapsed = r["audio_cos"] > 0.95 and r.get("retrieval_a2i", 1) <= 2 * r["retrieval_chance"]
            lines.append(f"| {name} | {r['epoch']} | {r['ap50_real']:.3f} | {r['ap50_silence']:.3f} "
                         f"| {r['ap50_shuffled']:.3f} | {r['audio_cos']:.3f} | {r['visual_cos']:.3f} "
                         f"| {r.get('retrieval_a2i', float('nan')):.3f} | {'yes' if collapsed else 'no'} |")
            curves.setdefault(name, []).append(r)
    if png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
        for ax, key, title in zip(axes, ("ap50_real", "ap50_silence", "ap50_shuffled"),
                                  ("AP50, real audio", "AP50, silent audio", "AP50, other-class audio")):
            for name, rows in curves.items():
                ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], "-o", ms=3, label=name)
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(png, dpi=110)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("data", help="render an in-memory set")
    d.add_argument("out")
    d.add_argument("--train", type=int, default=800)
    d.add_argument("--val", type=int, default=200)
    d.add_argument("--classes", type=int, default=8)
    d.add_argument("--image-size", type=int, default=128)
    d.add_argument("--distractors", choices=["class", "silent"], default="class")
    r = sub.add_parser("run", help="train one variant")
    r.add_argument("data")
    r.add_argument("out")
    r.add_argument("--batch", type=int, default=16)
    r.add_argument("--epochs", type=int, default=8)
    r.add_argument("--warmup", type=float, default=3)
    r.add_argument("--weight", type=float, default=100.0, help="weight of each FNAC term after the warm-up")
    r.add_argument("--ramp", type=float, default=0.0, help="epochs over which the weight rises to full")
    r.add_argument("--terms", default="fns1,tns,fns2")
    r.add_argument("--lr", type=float, default=3e-4)
    r.add_argument("--seed", type=int, default=12345)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--probe-every", type=int, default=10, help="steps between per-term gradient norms")
    r.add_argument("--load", default="")
    r.add_argument("--save", default="")
    t = sub.add_parser("table", help="markdown table (and curves) of runs")
    t.add_argument("runs", nargs="+")
    t.add_argument("--png", default=None)
    args = parser.parse_args(argv)
    if args.what == "data":
        data = {"train": make_split(args.train, args.classes, 1, args.image_size, args.distractors, val=False),
                "val": make_split(args.val, args.classes, 2, args.image_size, args.distractors, val=True),
                "image_size": args.image_size, "distractors": args.distractors}
        torch.save(data, args.out)
    elif args.what == "run":
        torch.set_num_threads(args.threads)
        run(args)
    else:
        print(table(args.runs, args.png))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
