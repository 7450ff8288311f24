"""The gunicorn entry point: ``gunicorn wsgi:app``. The only place an app is built for serving."""

from api import logs
from api.app import create_app

# gunicorn sets up its own loggers only: every other logger's lines (the request log,
# the engine's, the sign-in mail written to the log when SMTP_URL is unset) go to stderr
# beside them, redacted, in LOG_FORMAT (api/logs.py).
logs.setup()

app = create_app()
