"""Export: which trials, retrained, written as a self-contained folder (model.py, model.pt2, model.onnx, card).

``archsearch.export.load(folder)`` loads an export back; :func:`export` and :func:`save` write one.
"""

from archsearch.export.folder import export, load, save

__all__ = ["export", "load", "save"]
