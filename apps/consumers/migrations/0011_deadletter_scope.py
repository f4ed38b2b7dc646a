"""Dead letters park by ordering scope (the aggregate), not by key: a nullable column and its index, safe during a
rolling deploy. Adding a nullable column without a default does not rewrite the table; the index is built
CONCURRENTLY (hence a non-atomic migration), so consumers of the older release keep writing meanwhile. Rows without
a scope (older ones, and those older consumers write during the rollout) get it when a consumer of this release
starts (`deadletter_fill_scopes`); until then a replay computes it from the stored message."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('consumers', '0010_deadletter_identity'),
    ]

    operations = [
        migrations.AddField(
            model_name='deadletter',
            name='scope',
            field=models.BinaryField(blank=True, help_text='The ordering scope: the aggregate the event changes (`route:12`), or the key for a message that cannot be decoded. Later messages of the same scope park behind an unresolved dead letter.', null=True),
        ),
        migrations.AlterField(
            model_name='deadletter',
            name='reason',
            field=models.CharField(choices=[('not_json', 'Value is not JSON'), ('missing_headers', 'Missing or invalid CloudEvents headers'), ('unknown_type', 'Unknown event type version'), ('invalid_payload', 'Payload invalid against the event schema'), ('non_retryable', 'Handler refused it (not retryable)'), ('handler_error', 'Handler failed after retries'), ('parked', 'Parked behind an earlier failure of its aggregate')], max_length=20),
        ),
        AddIndexConcurrently(
            model_name='deadletter',
            index=models.Index(condition=models.Q(('status__in', ['pending', 'retrying', 'replaying'])), fields=['group', 'scope', 'id'], name='deadletter_unresolved_scope'),
        ),
    ]
