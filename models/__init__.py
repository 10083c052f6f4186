"""Models: the registry of model ids and one file per model family.

Importing this package is cheap and torch-free; a family imports torch only
when it is loaded, so `session/` can use the declarations here.
"""
