"""Dead letters keep Kafka keys and header values as bytes.

`key` becomes bytea: existing keys become their UTF-8 bytes (`convert_to`, not a `::bytea` cast, which would
read backslashes in a key as escapes). Header values become base64 (`value_b64`) whatever they hold; rows
that already had `value_b64` keep it. Reversing renders a key's non-ASCII bytes as PostgreSQL escape text
(`encode(key, 'escape')`) and turns UTF-8 header values back into text: ASCII keys and text headers round-trip.
"""

import base64

from django.db import migrations, models


def headers_to_base64(apps, schema_editor):
    DeadLetter = apps.get_model("consumers", "DeadLetter")
    changed = []
    for row in DeadLetter.objects.only("id", "headers").iterator(chunk_size=2000):
        if any("value" in header for header in row.headers):
            row.headers = [_to_base64(header) for header in row.headers]
            changed.append(row)
        if len(changed) >= 2000:
            DeadLetter.objects.bulk_update(changed, ["headers"])
            changed = []
    DeadLetter.objects.bulk_update(changed, ["headers"])


def headers_to_text(apps, schema_editor):
    DeadLetter = apps.get_model("consumers", "DeadLetter")
    changed = []
    for row in DeadLetter.objects.only("id", "headers").iterator(chunk_size=2000):
        row.headers = [_to_text(header) for header in row.headers]
        changed.append(row)
        if len(changed) >= 2000:
            DeadLetter.objects.bulk_update(changed, ["headers"])
            changed = []
    DeadLetter.objects.bulk_update(changed, ["headers"])


def _to_base64(header):
    if "value" not in header:
        return header
    value = header["value"]
    return {"key": header["key"], "value_b64": base64.b64encode(value.encode()).decode() if value is not None else None}


def _to_text(header):
    if "value_b64" not in header or "key" not in header:
        return header
    if header["value_b64"] is None:
        return {"key": header["key"], "value": None}
    raw = base64.b64decode(header["value_b64"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return header
    return header if "\x00" in text else {"key": header["key"], "value": text}


class Migration(migrations.Migration):

    dependencies = [
        ("consumers", "0002_roles"),
    ]

    operations = [
        migrations.RunSQL(
            sql='ALTER TABLE "consumers_deadletter" ALTER COLUMN "key" TYPE bytea USING convert_to("key", \'UTF8\')',
            reverse_sql=(
                'ALTER TABLE "consumers_deadletter" ALTER COLUMN "key" TYPE varchar(200) '
                'USING left(encode("key", \'escape\'), 200)'
            ),
            state_operations=[
                migrations.AlterField(
                    model_name="deadletter",
                    name="key",
                    field=models.BinaryField(blank=True, help_text="The Kafka key exactly as received (any bytes).", null=True),
                ),
            ],
        ),
        migrations.AlterField(
            model_name="deadletter",
            name="headers",
            field=models.JSONField(default=list, help_text="All Kafka headers, in order: [{key, value_b64}] (see encode_headers)."),
        ),
        migrations.RunPython(headers_to_base64, headers_to_text),
    ]
