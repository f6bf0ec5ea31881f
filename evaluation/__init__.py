"""Evaluation: the SPEC 6 protocol (protocol, pure numpy), running a model over a data set
(inference, TensorFlow) and the paper's figures (figures, matplotlib)."""
