"""The development stack's app config: installed by the local and test settings only (`manage.py embedded_broker`)."""

from django.apps import AppConfig


class DevstackConfig(AppConfig):
    name = "apps.devstack"
    label = "devstack"
    verbose_name = "Development stack"
