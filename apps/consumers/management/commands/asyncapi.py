"""`manage.py asyncapi [--format yaml|json]`: print the event catalogue (AsyncAPI 3.0) generated from the code."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from apps.consumers.catalogue import asyncapi_json, asyncapi_yaml


class Command(BaseCommand):
    help = "Print the AsyncAPI 3.0 document of the events (generated from apps/contracts and the handler registry)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=["yaml", "json"], default="yaml", help="output format (yaml)")

    def handle(self, *args: object, format: str, **options: object) -> None:
        self.stdout.write(asyncapi_yaml() if format == "yaml" else asyncapi_json(), ending="")
