from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "apps.outbox"
    label = "outbox"
    verbose_name = "Outbox"

    def ready(self) -> None:
        from apps.common.health import register_degradation
        from apps.outbox.selectors import relay_degraded

        register_degradation("outbox_relay", relay_degraded)
