"""Reading the data sets' 8-bit PNG files, with errors that name the file.

OpenCV does not raise on a missing or undecodable image (cv2.imread returns None), so every
reader goes through these functions to turn that into a DataError naming the path.
"""
import os

import cv2
import numpy as np

from data_pipeline.sample import DataError


def read_png(path: str) -> np.ndarray:
    """Reads an 8-bit image as stored.

    Args:
      path: the image file.

    Returns:
      (H, W) or (H, W, C) uint8; colour channels in OpenCV's order (BGR, BGRA).

    Raises:
      DataError: the file is missing, cannot be decoded (corrupt or truncated), or is not 8-bit.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: file missing")
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: cannot be decoded (corrupt, truncated or not an image)")
    if image.dtype != np.uint8:
        raise DataError(f"{path}: expected 8-bit channels, got {image.dtype}")
    return image


def read_bgr(path: str) -> np.ndarray:
    """Reads a 3-channel 8-bit image in OpenCV's BGR order (an alpha channel is dropped).

    Returns:
      (H, W, 3) uint8, channels B, G, R.
    """
    image = read_png(path)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"{path}: expected a 3-channel image, got shape {image.shape}")
    return image


def read_rgb(path: str) -> np.ndarray:
    """Reads a colour image as (H, W, 3) uint8 in RGB order."""
    return np.ascontiguousarray(read_bgr(path)[..., ::-1])


def read_labels(path: str) -> np.ndarray:
    """Reads a label map (one integer label per pixel).

    A 3-channel file is accepted when its channels agree (a grey image saved as colour).

    Returns:
      (H, W) uint8 labels.
    """
    image = read_png(path)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        channels = image[..., :3]
        if not (np.array_equal(channels[..., 0], channels[..., 1])
                        and np.array_equal(channels[..., 0], channels[..., 2])):
            raise DataError(f"{path}: a label map must have one channel (or equal channels), got "
                                            f"{image.shape[2]} differing channels")
        image = channels[..., 0]
    if image.ndim != 2:
        raise DataError(f"{path}: expected a single-channel label map, got shape {image.shape}")
    return image
