from django.apps import AppConfig


class TestAppConfig(AppConfig):
    """Test-only app (installed by logiflow.settings.test): an event type and a handler that fails on demand."""

    name = "tests.consumers.testapp"
    label = "consumers_testapp"
    default_auto_field = "django.db.models.BigAutoField"
