# Django ships no types: everything is Any, except what stubs/django/db/models types (pyproject.toml, [tool.mypy]).
from typing import Any

def __getattr__(name: str) -> Any: ...
