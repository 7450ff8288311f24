"""The gunicorn entry point: ``gunicorn wsgi:app``. The only place an app is built for serving."""

import logging

from api.app import create_app

# gunicorn sets up its own loggers only: the engine's INFO lines (among them the sign-in
# mail written to the log when SMTP_URL is unset) go to stderr beside them.
_handler = logging.StreamHandler()
_handler.setFormatter(
    logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
)
_engine_log = logging.getLogger("royalties")
if not _engine_log.handlers:
    _engine_log.addHandler(_handler)
    _engine_log.setLevel(logging.INFO)

app = create_app()
