"""Frames: the pixel type that travels the data path, its codecs and its geometry.

No asyncio, no networking. torch appears only in `frames.tensors`, imported by models.
"""
