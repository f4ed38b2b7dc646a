from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "apps.outbox"
    label = "outbox"
    verbose_name = "Outbox"

    def ready(self) -> None:
        from apps.common.health import register_readiness_report
        from apps.outbox.selectors import relay_readiness

        register_readiness_report("outbox_relay", relay_readiness)
