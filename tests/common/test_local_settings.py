"""`make run` across restarts: the local secret key is generated once and kept in var/, and the demo users it
creates again keep their sessions."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from apps.common.management.commands.create_demo_users import DEMO_PASSWORD


def local_secret_key(var_dir: Path) -> str:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "logiflow.settings.local", "LOGIFLOW_VAR_DIR": str(var_dir),
           "DATABASE_URL": "postgres://nobody@localhost/unused"}
    env.pop("DJANGO_SECRET_KEY", None)
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    return subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_the_local_secret_key_is_generated_once_into_var_and_kept_across_restarts(tmp_path: Path) -> None:
    first = local_secret_key(tmp_path)
    assert local_secret_key(tmp_path) == first, "a restart keeps the key, so sessions and signed links survive"
    assert len(first) >= 50 and "insecure" not in first
    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert local_secret_key(tmp_path / "another") != first, "each checkout gets its own key"


@pytest.mark.django_db
def test_creating_the_demo_users_again_keeps_them_logged_in(settings: object) -> None:
    settings.DEBUG = True  # type: ignore[attr-defined]
    call_command("create_demo_users", stdout=io.StringIO())
    client = Client()
    client.force_login(User.objects.get(username="dispatcher"))
    assert client.get("/admin/").status_code == 200

    call_command("create_demo_users", stdout=io.StringIO())  # make run, started again

    assert client.get("/admin/").status_code == 200, "still logged in"
    assert User.objects.get(username="dispatcher").check_password(DEMO_PASSWORD)
