"""Failure groups no longer depend on the producer text a message quotes (issue 21): recompute the fingerprint of
every dead letter whose fingerprint came from its own exception, handler and message under the old rule (parked
and unrecorded rows have fixed fingerprints and stay as they are). Data only, in batches; safe during a rolling
deploy: a consumer of the older release writing meanwhile gives its rows the old fingerprint, and they join the
new group when they are next recorded. Both rules are copied here, as migrations must not follow the code."""

import hashlib
import re

from django.db import migrations

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_HEX = re.compile(r"\b(?:0x[0-9a-f]+|(?=[0-9a-f]*[0-9])[0-9a-f]{8,})\b", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]+")
_INPUT_VALUE = re.compile(r"input_value=.*?, input_type=")
_QUOTED = re.compile(r"""(?<!\w)(?:'(?:[^'\\\n]|\\.)*(?:'|$)|"(?:[^"\\\n]|\\.)*(?:"|$))""", re.MULTILINE)
BATCH = 1000


def _hash(exception_class, handler, normalised):
    return hashlib.sha256(f"{exception_class}\x00{handler}\x00{normalised}".encode()).hexdigest()[:16]


def _old(exception_class, handler, message):
    return _hash(exception_class, handler, _DIGITS.sub("<n>", _HEX.sub("<hex>", _UUID.sub("<uuid>", message[:500]))))


def _new(exception_class, handler, message):
    normalised = _QUOTED.sub("<value>", _INPUT_VALUE.sub("input_value=<value>, input_type=", message[:2000]))
    return _hash(exception_class, handler, _DIGITS.sub("<n>", _HEX.sub("<hex>", _UUID.sub("<uuid>", normalised)))[:500])


def recompute(apps, schema_editor):
    DeadLetter = apps.get_model("consumers", "DeadLetter")
    rows = DeadLetter.objects.order_by("pk").values_list("pk", "exception_class", "handler", "error_message",
                                                         "fingerprint")
    last = 0
    while batch := list(rows.filter(pk__gt=last)[:BATCH]):
        last = batch[-1][0]
        changed = []
        for pk, exception_class, handler, message, fingerprint in batch:
            if fingerprint == _old(exception_class, handler, message):
                new = _new(exception_class, handler, message)
                if new != fingerprint:
                    changed.append(DeadLetter(pk=pk, fingerprint=new))
        DeadLetter.objects.bulk_update(changed, ["fingerprint"])


class Migration(migrations.Migration):

    dependencies = [
        ("consumers", "0011_deadletter_scope"),
    ]

    operations = [
        migrations.RunPython(recompute, migrations.RunPython.noop, elidable=True),
    ]
