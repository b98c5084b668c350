"""Run with TensorFlow, never by ssdzoo or its tests (README.md here): tiny files written by TensorFlow itself, for ssdzoo's reader tests."""
import os
from pathlib import Path
REPO = Path(__file__).resolve().parents[2]
import numpy as np
import tensorflow as tf
out = str(REPO / "tests/golden/tfod/files")
values = {
    "f32": np.arange(6, dtype=np.float32).reshape(2, 3) / 7, "f16": np.array([0.5, -1.25, 3.0, 65504], np.float16),
    "f64": np.array([[1e-300, 2.5]], np.float64), "i64": np.array(-(2 ** 40), np.int64), "i32": np.array([1, -2, 3], np.int32),
    "u8": np.array([[0, 255], [7, 8]], np.uint8), "b": np.array([True, False, True]), "i8": np.array([-128, 127], np.int8),
    "bf16": np.array([1.0, -2.5, 0.15625], np.float32),
}
# TF2: an object-based checkpoint
class Holder(tf.Module):
    def __init__(self):
        super().__init__()
        for k, v in values.items():
            dtype = tf.bfloat16 if k == "bf16" else None
            setattr(self, k, tf.Variable(tf.constant(v, dtype=dtype)))
        self.text = tf.Variable(tf.constant("hello"))
ckpt = tf.train.Checkpoint(model=Holder())
path = ckpt.write(os.path.join(out, "tf2_ckpt"))
print(path, tf.train.list_variables(path))
# TF1: name-based (tf.compat.v1 Saver) with a global step and weight averages
g = tf.Graph()
with g.as_default():
    v1 = tf.compat.v1
    w = v1.get_variable("FeatureExtractor/MobilenetV2/Conv/weights", initializer=np.full((3, 3, 3, 2), 0.25, np.float32))
    step = v1.train.get_or_create_global_step()
    ema = v1.train.ExponentialMovingAverage(0.9)
    op = ema.apply([w])
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        sess.run(op)
        sess.run(ema.average(w).assign(np.full((3, 3, 3, 2), 0.5, np.float32)))
        sess.run(step.assign(1234))
        saver = v1.train.Saver()
        print(saver.save(sess, os.path.join(out, "tf1_model.ckpt"), write_meta_graph=False, write_state=False))
        # a frozen GraphDef: weights as Const nodes, TF's own small-constant encodings
        consts = {k: tf.constant(v, dtype=tf.bfloat16 if k == "bf16" else None, name=f"const_{k}") for k, v in values.items()}
        fill = tf.constant(1.5, shape=[2, 3], name="const_fill")  # one value, repeated to the shape
        text = tf.constant(["a", "bc"], name="const_text")
        graph_def = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(),
                    ["FeatureExtractor/MobilenetV2/Conv/weights"] + [c.op.name for c in consts.values()] + ["const_fill", "const_text"])
open(os.path.join(out, "tf1_frozen.pb"), "wb").write(graph_def.SerializeToString())
np.savez(os.path.join(out, "expected.npz"), **values)
print(sorted(os.listdir(out)))
