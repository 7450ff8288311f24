"""The gunicorn entry point: ``gunicorn wsgi:app``. The only place an app is built for serving."""

from api.app import create_app

app = create_app()
