"""Run with TensorFlow and the OD API, never by ssdzoo or its tests (README.md here): a TF1 (TF-slim) ssd_mobilenet_v2 with fixture_value weights,
run by TensorFlow in graph mode on a real photo: names/shapes, input, raw outputs, anchors."""
import json, os, sys
from pathlib import Path
REPO = Path(__file__).resolve().parents[2]
import numpy as np
import tensorflow.compat.v1 as tf
tf.disable_v2_behavior()
from tensorflow.python.framework import ops as _ops
_ops.Tensor = tf.Tensor  # tf_slim 1.1 still names it there
from google.protobuf import text_format
from object_detection.protos import model_pb2
from object_detection.builders import model_builder
from PIL import Image
sys.path.insert(0, str(REPO / "tests"))
from tensorflow_writer import fixture_value

text = open(sys.argv[4]).read().replace("ssd_mobilenet_v2_keras", "ssd_mobilenet_v2")
body = text[text.index("model {") + len("model {"):text.rindex("}", 0, text.index("train_config"))]
size = int(sys.argv[1]); num_classes = int(sys.argv[2]); out = sys.argv[3]
cfg = model_pb2.DetectionModel(); text_format.Merge(body, cfg)
cfg.ssd.num_classes = num_classes
cfg.ssd.image_resizer.fixed_shape_resizer.height = size
cfg.ssd.image_resizer.fixed_shape_resizer.width = size
photo = np.array(Image.open(str(REPO / "tests/golden/tfod/photos/astronaut.png")).convert("RGB"))[None].astype(np.float32)
with tf.Graph().as_default() as g:
    model = model_builder.build(cfg, is_training=False)
    image = tf.placeholder(tf.float32, [1, None, None, 3])
    pre, shapes = model.preprocess(image)
    x = tf.placeholder(tf.float32, [1, size, size, 3])
    pred = model.predict(x, shapes)
    variables = tf.global_variables()
    assigns = [v.assign(fixture_value(v.op.name, v.shape.as_list())) for v in variables]
    with tf.Session() as sess:
        pre_v = sess.run(pre, {image: photo}).astype(np.float16)
        sess.run(assigns)
        out_v = sess.run(pred, {x: pre_v.astype(np.float32)})
result = {
    "names_json": np.array(json.dumps([[v.op.name, v.shape.as_list()] for v in variables])),
    "image_size": np.array([size, size]), "photo": np.array("astronaut.png"), "input_nhwc": pre_v,
    "box_encodings_ty_tx_th_tw": out_v["box_encodings"], "class_predictions_with_background": out_v["class_predictions_with_background"],
    "anchors_ymin_xmin_ymax_xmax": out_v["anchors"].astype(np.float32),
}
for k in ("box_encodings_ty_tx_th_tw", "class_predictions_with_background"):
    print(k, result[k].shape, float(result[k].std()), float(np.abs(result[k]).max()))
print(len(variables), [v.op.name for v in variables][:5])
np.savez_compressed(out, **result)
