from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "apps.common"
    label = "common"
    verbose_name = "Common infrastructure"

    def ready(self) -> None:
        from django.urls import register_converter

        from apps.common.converters import IdConverter

        register_converter(IdConverter, "id")
