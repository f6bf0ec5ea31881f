"""Synthetic hand data in the RHD and STB formats (SPEC 5, "Synthetic data").

An articulated hand model (hand_model) is given a body and placed in front of a camera (scene),
ray cast into exact depth, part masks and shaded colour over cluttered backgrounds (renderer,
texture), and written in exactly the real data sets' formats (rhd_writer, stb_writer), so the
real readers read it unchanged. `generate` writes a whole set; `python -m data_pipeline.synthetic`
is its command line.
"""
from data_pipeline.synthetic.builder import generate

__all__ = ["generate"]
