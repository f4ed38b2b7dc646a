from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class ConsumersConfig(AppConfig):
    name = "apps.consumers"
    label = "consumers"
    verbose_name = "Consumers and dead letters"

    def ready(self) -> None:
        # Each app registers its event handlers in its own handlers.py.
        autodiscover_modules("handlers")
