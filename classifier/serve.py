"""``python -m classifier.serve``: the service under uvicorn, listening and forking as the settings say.

The same app as ``uvicorn classifier.app:app``; this adds `Settings.host`, `port` and `workers` (each worker
process loads its own copy of the models).
"""

from __future__ import annotations

import uvicorn

from classifier.settings import Settings
from classifier.telemetry import configure_logging


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        "classifier.app:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
