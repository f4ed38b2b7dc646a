"""The operations app's configuration."""

from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "apps.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from apps.common.health import register_degradations
        from apps.ops.selectors import stalled_groups

        # /readyz names each consumer group whose lag has stood still (measured from the broker, not by it).
        register_degradations("consumer_lag", lambda: [f"consumer_lag:{group}" for group in stalled_groups()])
