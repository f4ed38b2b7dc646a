# The model choices as the str/int enums they are, so `Route.Status.PLANNED` is a str and not the
# `("planned", "Planned")` tuple it is written as; every other name of django.db.models is Any.
import enum
from typing import Any

class ChoicesType(enum.EnumMeta):
    @property
    def choices(cls) -> list[tuple[Any, str]]: ...

# Bases without members of their own (mypy asks stub enums for members): the models' subclasses have them.
class Choices(enum.Enum, metaclass=ChoicesType):  # type: ignore[misc]
    @property
    def label(self) -> str: ...

class TextChoices(str, Choices): ...  # type: ignore[misc]
class IntegerChoices(int, Choices): ...  # type: ignore[misc]

def __getattr__(name: str) -> Any: ...
