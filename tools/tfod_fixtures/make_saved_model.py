"""Run with TensorFlow, never by ssdzoo or its tests (README.md here): a tiny SavedModel whose variables TF keys by aggregate paths, and the checkpoint keys
tf.train.Checkpoint gives the same objects (for ssdzoo's object-graph test)."""
import os, json
from pathlib import Path
REPO = Path(__file__).resolve().parents[2]
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tensorflow as tf
out = str(REPO / "tests/golden/tfod/files")
class Heads(tf.keras.layers.Layer):  # as the OD API's box predictor: sublayers in lists
    def __init__(self):
        super().__init__()
        self._prediction_heads = {"box": [tf.keras.layers.Conv2D(2, 3)], "cls": [tf.keras.layers.Conv2D(3, 1)]}
        self._norm = tf.keras.layers.BatchNormalization()
    def call(self, x):
        return self._prediction_heads["box"][0](self._norm(x)), self._prediction_heads["cls"][0](x)
class Meta(tf.keras.layers.Layer):  # as the OD API's SSDMetaArch, a Keras layer
    def __init__(self):
        super().__init__()
        self._box_predictor = Heads()
    def call(self, x):
        return self._box_predictor(x)
inner = Meta()
inner(tf.zeros([1, 8, 8, 1]))
for i, v in enumerate(inner.variables):
    v.assign(np.arange(np.prod(v.shape), dtype=np.float32).reshape(v.shape) + i)
class Detector(tf.Module):
    def __init__(self, model):
        super().__init__()
        self._model = model
    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1])])
    def __call__(self, x):
        return self._model(x)
module = Detector(inner)
tf.saved_model.save(module, os.path.join(os.environ.get("WORK", "/tmp/tfod_work"), "tiny_saved"))
import shutil
os.makedirs(os.path.join(out, "tf2_saved_model", "variables"), exist_ok=True)
for f in os.listdir(os.path.join(os.environ.get("WORK", "/tmp/tfod_work"), "tiny_saved", "variables")):
    shutil.copy(os.path.join(os.path.join(os.environ.get("WORK", "/tmp/tfod_work"), "tiny_saved", "variables"), f), os.path.join(out, "tf2_saved_model", "variables", f))
saved = tf.train.load_checkpoint(os.path.join(out, "tf2_saved_model", "variables", "variables"))
path = tf.train.Checkpoint(model=inner).write(os.path.join(os.environ.get("WORK", "/tmp/tfod_work"), "tiny_ckpt", "ckpt"))
plain = tf.train.load_checkpoint(path)
print(sorted(saved.get_variable_to_shape_map()))
print(sorted(plain.get_variable_to_shape_map()))
# what each saved key must read as: the checkpoint key of the same value
pairs = {}
for k in saved.get_variable_to_shape_map():
    if k.startswith("_CHECKPOINTABLE"): continue
    v = saved.get_tensor(k)
    match = [p for p in plain.get_variable_to_shape_map() if p.startswith("model/") and np.array_equal(plain.get_tensor(p), v)]
    pairs[k] = "_" + match[0]
json.dump(pairs, open(os.path.join(out, "tf2_saved_model_keys.json"), "w"), indent=1, sort_keys=True)
print(pairs)
