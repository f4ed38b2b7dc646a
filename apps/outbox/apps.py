from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "apps.outbox"
    label = "outbox"
    verbose_name = "Outbox"

    def ready(self) -> None:
        from django.core.checks import register

        from apps.common.health import register_degradation
        from apps.outbox.checks import engine_defers_writes
        from apps.outbox.selectors import relay_degraded

        register_degradation("outbox_relay", relay_degraded)
        register(engine_defers_writes)
