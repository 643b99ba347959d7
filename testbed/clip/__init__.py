"""The testbed's small CLIP (``clip-shapes``): synthetic domain (``shapes``), training (``train``),
config ``clip-shapes.json`` and the kept fp16 checkpoint ``clip-shapes-fp16.pt``."""
