"""The window of GPI Desktop (PySide6 only here).

The window is a thin client of `gpi_desktop.core`: long work (loading a model,
generating, exporting, keyring calls) runs off the main thread and reports
back through Qt signals. Nothing in this package imports torch.
"""
