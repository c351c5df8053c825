"""The Qt-free engine of GPI Desktop. Nothing in this package may import Qt."""
