"""Evaluation of 3D hand pose estimates.

  protocol   the SPEC 6 protocol (hand3d's EvalUtil): EPE, PCK, AUC; pure numpy
  inference  a model over a tf.data dataset: RGB-only predictions in mm, training's validation
  figures    PCK curves and the paper's Figs. 3 and 4 (matplotlib, Agg)
  report     the files evaluate.py writes (metrics.json, predictions.npz, figures)
  files      atomic file output
"""
