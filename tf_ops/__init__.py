"""Point-cloud losses of SPEC section 3 as TensorFlow ops.

`emd` (Earth Mover's Distance, Eq. 9) runs a custom op from the shared library
tf_ops/build/libemd_ops.so, which `make ops` builds; `chamfer` (Eq. 8) is
plain TensorFlow. Importing this package loads the library.
"""
import os

import tensorflow as tf

LIBRARY_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "build", "libemd_ops.so")

if not os.path.exists(LIBRARY_PATH):
    raise ImportError(
        f"tf_ops: the op library {LIBRARY_PATH} is not built; run `make ops` "
        "in the repository root.")
try:
    LIBRARY = tf.load_op_library(LIBRARY_PATH)
except tf.errors.NotFoundError as error:
    # A library built against another TensorFlow fails here with missing
    # symbols; rebuilding fixes it.
    raise ImportError(
        f"tf_ops: cannot load {LIBRARY_PATH} ({error.message}); rebuild it "
        "with `make ops` in the repository root.") from error
