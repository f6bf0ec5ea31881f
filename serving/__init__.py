"""Serving: the SavedModel of the inference path and predictions on new images."""
