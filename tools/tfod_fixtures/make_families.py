"""Run with TensorFlow and the OD API, never by ssdzoo or its tests (README.md here): TF2 OD API SSD fixtures for ssdzoo's tests.

For each zoo config: the 90-class model's checkpoint names and shapes (TF's own), and a 3-class
model at 160x160 whose variables get tests/tensorflow_writer.fixture_value, run by TensorFlow on a
real photo: its preprocessed input, raw outputs and anchors.
"""
import json, os, sys
from pathlib import Path
REPO = Path(__file__).resolve().parents[2]
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from object_detection.protos import model_pb2
from object_detection.builders import model_builder
from PIL import Image

sys.path.insert(0, str(REPO / "tests"))
from tensorflow_writer import fixture_value

SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
PHOTO = str(REPO / "tests/golden/tfod/photos/astronaut.png")


def normalize(key):
    key = key[:-len(SUFFIX)] if key.endswith(SUFFIX) else key
    return key[len("model/"):] if key.startswith("model/") else key


def load(cfg_path, num_classes=None, size=None):
    text = open(cfg_path).read()
    body = text[text.index("model {") + len("model {"):text.rindex("}", 0, text.index("train_config"))]
    cfg = model_pb2.DetectionModel()
    text_format.Merge(body, cfg)
    if num_classes:
        cfg.ssd.num_classes = num_classes
    if size:
        cfg.ssd.image_resizer.fixed_shape_resizer.height = size
        cfg.ssd.image_resizer.fixed_shape_resizer.width = size
    return cfg


def build(cfg):
    model = model_builder.build(cfg, is_training=False)
    return model


name, cfg_path, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
work = os.path.join(os.environ.get("WORK", "/tmp/tfod_work"), name)
os.makedirs(work, exist_ok=True)
result = {}

# 1. the zoo model (90 classes, zoo size): names, shapes, anchors
zoo_cfg = load(cfg_path)
zoo = build(zoo_cfg)
size = zoo_cfg.ssd.image_resizer.fixed_shape_resizer
pre, shapes = zoo.preprocess(tf.zeros([1, size.height, size.width, 3]))
pred = zoo.predict(pre, shapes)
path = tf.train.Checkpoint(model=zoo).save(os.path.join(work, "zoo", "ckpt"))
zoo_names = sorted(tf.train.list_variables(path))
result["zoo_names_json"] = np.array(json.dumps([[n, s] for n, s in zoo_names]))
result["zoo_image_size"] = np.array([size.height, size.width])
if pred["anchors"].shape[0] <= 20000:  # the 51150 anchors at 640 would add 0.5 MB: not stored
    result["zoo_anchors_ymin_xmin_ymax_xmax"] = pred["anchors"].numpy().astype(np.float32)

# 2. the 3-class model at 160x160 with fixture_value weights, on a real photo
small_cfg = load(cfg_path, num_classes=3, size=160)
model = build(small_cfg)
photo = np.array(Image.open(PHOTO).convert("RGB"))[None].astype(np.float32)
pre, shapes = model.preprocess(tf.constant(photo))
x = tf.constant(pre.numpy().astype(np.float16).astype(np.float32))  # stored as float16: feed that
model.predict(x, shapes)  # creates the variables
ckpt = tf.train.Checkpoint(model=model)
path = ckpt.save(os.path.join(work, "small", "ckpt"))
reader = tf.train.load_checkpoint(path)
shape_map = reader.get_variable_to_shape_map()
keys = sorted(k for k in shape_map if k != "_CHECKPOINTABLE_OBJECT_GRAPH" and not k.startswith("save_counter"))
values = [fixture_value(normalize(k), shape_map[k]) for k in keys]
prefix = os.path.join(work, "small", "filled")
kept = ["_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE"]
tf.raw_ops.SaveV2(prefix=prefix, tensor_names=keys + kept, shape_and_slices=[""] * (len(keys) + 2),
                  tensors=[tf.constant(v) for v in values] + [tf.constant(reader.get_tensor(k)) for k in kept])
status = ckpt.restore(prefix)
status.assert_existing_objects_matched()
pred = model.predict(x, shapes)
check = tf.train.load_checkpoint(prefix)
assert all(np.array_equal(check.get_tensor(k), v) for k, v in zip(keys, values))
result["names_json"] = np.array(json.dumps([[k, list(shape_map[k])] for k in keys]))
result["image_size"] = np.array([160, 160])
result["photo"] = np.array(os.path.basename(PHOTO))
result["input_nhwc"] = x.numpy().astype(np.float16)
result["box_encodings_ty_tx_th_tw"] = pred["box_encodings"].numpy()
result["class_predictions_with_background"] = pred["class_predictions_with_background"].numpy()
result["anchors_ymin_xmin_ymax_xmax"] = pred["anchors"].numpy().astype(np.float32)
for k in ("box_encodings_ty_tx_th_tw", "class_predictions_with_background"):
    v = result[k]
    print(name, k, v.shape, "mean", float(v.mean()), "std", float(v.std()), "absmax", float(np.abs(v).max()))
np.savez_compressed(os.path.join(out_dir, name + ".npz"), **result)
print(name, "written", len(keys), "variables; zoo", len(zoo_names))
