"""The benchmarks' re-implementation of the seed's numpy algorithms reproduces the goldens."""

import numpy as np

from conftest import load_golden
from ssdzoo.bench.seed_reference import seed_encode, seed_postprocess


def test_seed_encode_reproduces_golden():
    ref = load_golden("mnv2_300.npz")
    for n in range(len(ref["encode_gt_count"])):
        gt = ref["encode_gt_y1_x1_y2_x2_label"][n][: ref["encode_gt_count"][n]]
        loc, labels = seed_encode(gt[:, :4], gt[:, 4].astype(np.int64), ref["default_boxes_cy_cx_h_w"],
                                  ref["default_boxes_y1_x1_y2_x2"])
        np.testing.assert_array_equal(labels, ref["encode_label"][n])
        np.testing.assert_allclose(loc, ref["encode_loc"][n], atol=1e-5)


def test_seed_postprocess_reproduces_golden():
    ref = load_golden("postprocess.npz")
    for case in range(6):
        dets = seed_postprocess(ref[f"case{case}_boxes"], ref[f"case{case}_scores"], tuple(ref[f"case{case}_hw"]),
                                min_score=0.1, nms_threshold=0.6, max_boxes=100)
        np.testing.assert_allclose(dets, ref[f"case{case}_dets"], atol=1e-6)
