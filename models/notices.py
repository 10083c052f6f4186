"""What the model libraries log on every load that says nothing to an operator.

Each notice is dropped at the logger that emits it, by its own words, so that any
other warning of these libraries (a real problem) still shows. Cheap: nothing is
imported, the loggers are made by name and the libraries find them.
"""

from __future__ import annotations

import logging

NOTICES: dict[str, tuple[str, ...]] = {
    # The CLIP feature extractor that diffusers pipelines carry falls back to its PIL
    # version without torchvision, which the server does not install: it never runs.
    "transformers.utils.import_utils": ("requires torchvision (not installed)",),
    # TAESD's config.json still carries keys that AutoencoderTiny no longer takes.
    "diffusers.configuration_utils": ("were passed to AutoencoderTiny, but are not expected",),
    # The pipeline decodes with an AutoencoderTiny instead of its own VAE on purpose (--vae).
    "diffusers.pipelines.pipeline_utils": ("Expected types for vae:",),
}


class _DropNotices(logging.Filter):
    def __init__(self, notices: tuple[str, ...]) -> None:
        super().__init__()
        self.notices = notices

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(notice in message for notice in self.notices)


def silence_library_notices() -> None:
    """Drop `NOTICES` from now on (idempotent)."""
    for name, notices in NOTICES.items():
        emitter = logging.getLogger(name)
        if not any(isinstance(existing, _DropNotices) for existing in emitter.filters):
            emitter.addFilter(_DropNotices(notices))
