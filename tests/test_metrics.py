"""The metric API against a plain re-implementation of the published protocol, written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avloc import metrics

torch.set_num_threads(2)


# ------------------------------------------------------------ independent re-implementation

def ref_upsample(heat: np.ndarray, mode: str) -> np.ndarray:
    """One map at a time, as the reference scripts do (batch of one)."""
    t = torch.from_numpy(heat.astype(np.float32))[None, None]
    out = F.interpolate(t, size=(224, 224), mode=mode, align_corners=(mode == "bilinear"))
    return out[0, 0].numpy()


def ref_normalise(value: np.ndarray) -> np.ndarray:
    vmin, vmax = value.min(), value.max()
    if not (vmax - vmin) == 0:
        value = (value - vmin) / (vmax - vmin)
    return value


def ref_ciou(pred: np.ndarray, gt: np.ndarray) -> float:
    thr = np.sort(pred.flatten())[int(pred.shape[0] * pred.shape[1] / 2)]
    infer = np.zeros((224, 224))
    for y in range(224):
        for x in range(224):
            if pred[y, x] >= thr:
                infer[y, x] = 1
    g = gt.astype(np.float64)
    return np.sum(infer * g) / (np.sum(g) + np.sum(infer * (g == 0)))


def ref_summary(cious: list) -> tuple:
    n = len(cious)
    ap50 = sum(1 for c in cious if c >= 0.5) / n
    success = [sum(1 for c in cious if c >= 0.05 * i) / n for i in range(21)]
    auc = 0.0
    for i in range(1, 21):
        auc += (0.05 * i - 0.05 * (i - 1)) * (success[i] + success[i - 1]) / 2
    return ap50, auc, sum(cious) / n


def random_gt(rng, kind: str) -> np.ndarray:
    g = np.zeros((224, 224), dtype=np.float32)
    if kind == "empty":
        return g
    for _ in range(int(rng.integers(1, 4))):
        x1, y1 = rng.integers(0, 150, size=2)
        w, h = rng.integers(20, 224, size=2)
        g[y1:y1 + h, x1:x1 + w] += 1.0 if kind == "binary" else 0.5
    return np.minimum(g, 1.0)


def random_heatmaps(rng, n: int, h: int, w: int) -> np.ndarray:
    maps = rng.normal(size=(n, h, w)).astype(np.float32)
    maps[0] = 3.0  # constant map: max == min, left unchanged
    maps[1] = np.round(maps[1])  # heavy ties around the median
    maps[2] *= 1e4
    return maps


@pytest.mark.parametrize("seed,mode,hw", [(0, "bicubic", (7, 7)), (1, "bilinear", (7, 7)), (2, "bicubic", (14, 10))])
def test_localization_scores_match_reference_exactly(seed, mode, hw):
    rng = np.random.default_rng(seed)
    n = 24
    heat = random_heatmaps(rng, n, *hw)
    kinds = ["binary", "soft", "empty"]
    gt = np.stack([random_gt(rng, kinds[i % 3]) for i in range(n)])
    # a few near-perfect maps of large boxes so both sides of the 0.5 cut are populated
    for i in range(3, 8):
        gt[i] = 0
        gt[i, : int(rng.integers(120, 200)), int(rng.integers(0, 30)):] = 1.0
        heat[i] = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(gt[i])[None], hw)[0].numpy() \
            + 1e-3 * rng.normal(size=hw).astype(np.float32)

    got = metrics.localization_scores(heat, gt, upsample=mode)
    expected = [ref_ciou(ref_normalise(ref_upsample(heat[i], mode)), gt[i]) for i in range(n)]
    assert np.array_equal(got["per_sample"], np.asarray(expected))
    ap50, auc, mean = ref_summary(expected)
    assert got["ciou"] == ap50
    assert got["auc"] == pytest.approx(auc, abs=1e-12)
    assert got["mean_ciou"] == pytest.approx(mean, abs=1e-12)
    assert 0 < ap50 < 1  # the check sees both sides of the cut


def test_scores_accept_tensors_and_do_not_depend_on_batching():
    rng = np.random.default_rng(3)
    heat = rng.normal(size=(10, 7, 7)).astype(np.float32)
    gt = np.stack([random_gt(rng, "binary") for _ in range(10)])
    whole = metrics.localization_scores(torch.from_numpy(heat), torch.from_numpy(gt))["per_sample"]
    parts = np.concatenate([metrics.localization_scores(heat[i:i + 3], gt[i:i + 3])["per_sample"] for i in range(0, 10, 3)])
    assert np.array_equal(whole, parts)


def _numpy_bilinear_align_corners(m: np.ndarray, size: int = 224) -> np.ndarray:
    h, w = m.shape
    ys = np.arange(size) * (h - 1) / (size - 1)
    xs = np.arange(size) * (w - 1) / (size - 1)
    out = np.zeros((size, size))
    for i, y in enumerate(ys):
        y0 = min(int(np.floor(y)), h - 2)
        dy = y - y0
        for j, x in enumerate(xs):
            x0 = min(int(np.floor(x)), w - 2)
            dx = x - x0
            out[i, j] = ((1 - dy) * ((1 - dx) * m[y0, x0] + dx * m[y0, x0 + 1])
                         + dy * ((1 - dx) * m[y0 + 1, x0] + dx * m[y0 + 1, x0 + 1]))
    return out


def _cubic_weights(t: float, a: float = -0.75) -> list:
    def k(x):
        x = abs(x)
        if x <= 1:
            return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
        if x < 2:
            return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
        return 0.0
    return [k(t + 1), k(t), k(1 - t), k(2 - t)]


def _numpy_bicubic_half_pixel(m: np.ndarray, size: int = 224) -> np.ndarray:
    h, w = m.shape

    def axis(n_in):
        rows = []
        for o in range(size):
            src = (o + 0.5) * n_in / size - 0.5
            i0 = int(np.floor(src))
            wts = _cubic_weights(src - i0)
            rows.append([(min(max(i0 - 1 + k, 0), n_in - 1), wts[k]) for k in range(4)])
        return rows

    ay, ax = axis(h), axis(w)
    out = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            out[i, j] = sum(wy * wx * m[yy, xx] for yy, wy in ay[i] for xx, wx in ax[j])
    return out


def test_upsampling_modes_are_the_documented_kernels():
    rng = np.random.default_rng(5)
    m = rng.normal(size=(7, 7)).astype(np.float32)
    bil = metrics.upsample_maps(m[None], "bilinear")[0].numpy()
    bic = metrics.upsample_maps(m[None], "bicubic")[0].numpy()
    np.testing.assert_allclose(bil, _numpy_bilinear_align_corners(m.astype(np.float64)), atol=2e-5)
    np.testing.assert_allclose(bic, _numpy_bicubic_half_pixel(m.astype(np.float64)), atol=2e-5)
    assert not np.allclose(bil, bic, atol=1e-3)
    with pytest.raises(ValueError):
        metrics.upsample_maps(m[None], "nearest")


def test_median_threshold_consequences():
    # A perfect map of a box covering exactly half the image is predicted exactly (cIoU 1).
    half = np.zeros((224, 224), np.float32)
    half[:112] = 1
    # A perfect map of a 10% box: at least half the image is predicted, so cIoU = area(G) / area(P).
    small = np.zeros((224, 224), np.float32)
    small[50:50 + 71, 60:60 + 71] = 1
    whole = np.full((224, 224), 2.0, np.float32)  # constant: everything predicted
    scores = metrics.localization_scores(np.stack([half, small, whole]), np.stack([half, small, small]))
    per = scores["per_sample"]
    assert per[0] == 1.0
    assert per[1] == pytest.approx(71 * 71 / 50176)  # t = 0 -> all predicted
    assert per[2] == pytest.approx(71 * 71 / 50176)
    assert scores["ciou"] == pytest.approx(1 / 3)


def test_summary_edges_and_auc_grid():
    assert metrics.summarise_cious([1.0, 1.0])["auc"] == pytest.approx(1.0)
    assert metrics.summarise_cious([0.0, 0.0])["auc"] == pytest.approx(0.025)  # success(0) = 1 only
    s = metrics.summarise_cious([0.5, 0.49])
    assert s["ciou"] == 0.5 and s["mean_ciou"] == pytest.approx(0.495)
    assert len(metrics.AUC_THRESHOLDS) == 21 and metrics.AUC_THRESHOLDS[-1] == pytest.approx(1.0)
    assert metrics.MEDIAN_INDEX == 25088


def test_empty_ground_truth_scores_zero_by_the_formula():
    heat = np.random.default_rng(0).normal(size=(1, 7, 7)).astype(np.float32)
    got = metrics.localization_scores(heat, np.zeros((1, 224, 224), np.float32))
    assert got["per_sample"][0] == 0.0


def test_gt_map_from_boxes_clips_scales_and_truncates():
    g = metrics.gt_map_from_boxes([[0.5, 0.25, 0.9999, 1.7]])
    ys, xs = np.nonzero(g)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (112, 223, 56, 224)  # int(0.9999*224) = 223
    assert set(np.unique(g)) == {0.0, 1.0}
    # union, not sum
    u = metrics.gt_map_from_boxes([[0, 0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]])
    assert u.max() == 1.0 and u.sum() == 112 * 112 * 2 - 56 * 56
    # defects: placeholder, inverted and zero-width boxes give empty or partial maps, never crash
    assert metrics.gt_map_from_boxes([[0.4, 0.6, -2.88e16, 0.98]]).sum() == 0
    assert metrics.gt_map_from_boxes([[0.7, 0.1, 0.3, 0.5]]).sum() == 0
    assert metrics.gt_map_from_boxes([[0.3, 0.1, 0.3, 0.5]]).sum() == 0
    assert metrics.gt_map_from_boxes([[0.1, 0.2, 0.5, -2.88e16]]).sum() == 0
    assert metrics.box_defects([0.4, 0.6, -2.88e16, 0.98]) == ["placeholder", "x2_lt_x1"]
    assert metrics.box_defects([0.3, 0.1, 0.3, 0.5]) == ["x1_eq_x2"]
    assert metrics.box_defects([0.1, 0.1, 0.3, 0.5]) == []


def test_flickr_soft_consensus():
    # 256-canvas pixels -> int(224 * v / 256)
    assert metrics.flickr_box_to_map_coords((0, 10, 255, 256)) == (0, 8, 223, 224)
    a = (0, 0, 128, 128)  # -> 0..112
    b = (64, 64, 192, 192)  # -> 56..168
    g = metrics.gt_map_from_flickr_boxes([a, b])
    assert g[100, 100] == 1.0  # two annotators agree
    assert g[10, 10] == 0.5 and g[160, 160] == 0.5  # one annotator
    assert g[200, 200] == 0.0
    g3 = metrics.gt_map_from_flickr_boxes([a, a, a])
    assert g3.max() == 1.0  # 3 / 2 clipped at 1
    g1 = metrics.gt_map_from_flickr_boxes([a])
    assert g1.max() == 0.5


def test_gt_map_from_mask_binarises_palette_indices():
    m = np.zeros((224, 224), np.uint8)
    m[10:20, 10:30] = 1
    m[50:60, 50:60] = 255
    g = metrics.gt_map_from_mask(m)
    assert g.dtype == np.float32 and g.sum() == 200 + 100 and set(np.unique(g)) == {0.0, 1.0}


# ------------------------------------------------------------------------- pointing (beside the protocol)

def test_peak_points_single_peak_flat_top_and_constant_map():
    peaked = torch.zeros(224, 224)
    peaked[40, 170] = 1.0
    plateau = torch.zeros(224, 224)
    plateau[10:21, 100:131] = 1.0  # rows 10..20, columns 100..130: centre (15, 115)
    constant = torch.full((224, 224), 3.0)
    points = metrics.peak_points(torch.stack([peaked, plateau, constant]))
    assert points.tolist() == [[40, 170], [15, 115], [111, 111]]


def test_pointing_hits_ask_where_the_peak_is_not_how_well_the_region_fits():
    """A map that peaks inside a small box points at it (hit) although its median-threshold region,
    half the image, cannot reach cIoU 0.5 on a box under a quarter of the frame; a map peaked beside
    the box misses."""
    gt = torch.from_numpy(np.stack([metrics.gt_map_from_boxes([[0.1, 0.1, 0.4, 0.4]])] * 2))  # 9% of the frame
    yy, xx = torch.meshgrid(torch.arange(14.0), torch.arange(14.0), indexing="ij")
    on_box = -((yy - 3.5) ** 2 + (xx - 3.5) ** 2)  # raw 14 x 14 maps, peaks at cell (3.5, 3.5) ~ 0.25 of the frame
    beside = -((yy - 10) ** 2 + (xx - 10) ** 2)
    scores = metrics.localization_scores(torch.stack([on_box, beside]), gt)
    assert scores["per_sample_pointing"].tolist() == [True, False]
    assert scores["pointing"] == 0.5
    assert scores["per_sample"][0] < 0.5  # the box is too small for the median threshold
    direct = metrics.pointing_hits(metrics.minmax_normalise(metrics.upsample_maps(torch.stack([on_box, beside]))), gt)
    assert direct.tolist() == [True, False]


def test_baseline_pointing_is_the_ground_truth_at_the_centre():
    from avloc.evaluation.baselines import BASELINES, baseline_batch, baseline_pointing

    # the baselines peak at pixel (111, 111): a box from column 112 misses it, one up to column 111 holds it
    boxes = [[0.4, 0.4, 0.6, 0.6], [0.0, 0.0, 0.3, 0.3], [0.5, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 1.0]]
    gts = torch.from_numpy(np.stack([metrics.gt_map_from_boxes([b]) for b in boxes]))
    expected = [True, False, False, True]
    got = baseline_pointing(gts)
    for name in BASELINES:
        assert got[name].tolist() == expected, name
        via_api = metrics.localization_scores(baseline_batch(name, 4), gts)["per_sample_pointing"]
        assert via_api.tolist() == expected, name
