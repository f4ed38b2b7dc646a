from django.apps import AppConfig


class ContractsConfig(AppConfig):
    """Installed for its management command (`manage.py contracts`); it has no models."""

    name = "apps.contracts"
    label = "contracts"
    verbose_name = "Event contracts"
