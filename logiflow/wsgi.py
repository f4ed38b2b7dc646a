"""WSGI entry point: production settings unless DJANGO_SETTINGS_MODULE says otherwise.

Only manage.py defaults to the local settings (DEBUG, a public key): a server started without the variable
must not quietly run them; production settings refuse to start without their secrets instead.
"""

import os

from django.core.wsgi import get_wsgi_application

from apps.common.telemetry import configure_telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "logiflow.settings.production")
configure_telemetry("logiflow-web")  # before the handler loads the middleware: the Django instrumentation adds one
application = get_wsgi_application()
