"""`manage.py create_demo_users`: a demo superuser and one user per role, for `make run` only."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError

DEMO_PASSWORD = "logiflow-demo"
ROLE_USERS = {"dispatcher": "dispatcher", "finance": "finance", "operations": "operations"}


class Command(BaseCommand):
    help = "Create (or reset) the demo admin and role users, and print their credentials."

    def handle(self, *args: object, **options: object) -> None:
        if not settings.DEBUG:
            raise CommandError("demo users are for local development (DEBUG=True) only")
        admin = self._user("admin", superuser=True)
        self.stdout.write(f"Demo admin: http://127.0.0.1:8000/admin/  user={admin.username} password={DEMO_PASSWORD}")
        for username, group_name in ROLE_USERS.items():
            group = Group.objects.filter(name=group_name).first()
            user = self._user(username, superuser=False)
            if group:
                user.groups.add(group)
            self.stdout.write(f"Demo {group_name}: user={username} password={DEMO_PASSWORD}")

    def _user(self, username: str, *, superuser: bool) -> User:
        user, _ = User.objects.get_or_create(username=username)
        user.is_staff = True
        user.is_superuser = superuser
        # Set only when it differs: a new hash (a new salt) would end every session of the user, and `make run`
        # calls this on every start.
        if not user.check_password(DEMO_PASSWORD):
            user.set_password(DEMO_PASSWORD)
        user.save()
        return user
