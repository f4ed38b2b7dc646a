"""Role groups are created by data migrations; this helper lets a migration grant exact permissions."""

from __future__ import annotations

from typing import Any


def grant(apps: Any, schema_editor: Any, *, group: str, permissions: list[str]) -> None:
    """Give `group` (created if missing) the permissions named "app_label.codename".

    Permissions are normally created after migrations run, so they are created here first.
    """
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    role, _ = Group.objects.get_or_create(name=group)
    for name in permissions:
        app_label, codename = name.split(".")
        role.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
