"""Status `retrying`: automatic retries on a backoff schedule (next_attempt_at, auto_retries); the unresolved-key index covers it."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('consumers', '0004_relink_orphaned_parked'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='deadletter',
            name='deadletter_unresolved_key_idx',
        ),
        migrations.AddField(
            model_name='deadletter',
            name='auto_retries',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='deadletter',
            name='next_attempt_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='deadletter',
            name='status',
            field=models.CharField(choices=[('pending', 'Pending'), ('retrying', 'Retrying automatically'), ('replaying', 'Replaying'), ('replayed', 'Replayed'), ('discarded', 'Discarded')], default='pending', max_length=10),
        ),
        migrations.AlterField(
            model_name='deadletterreplay',
            name='action',
            field=models.CharField(choices=[('replay', 'Replay'), ('edit_and_replay', 'Edit and replay'), ('release', 'Released after its head was resolved'), ('auto_retry', 'Automatic retry'), ('queue', 'Queued for background replay'), ('discard', 'Discard')], max_length=20),
        ),
        migrations.AddIndex(
            model_name='deadletter',
            index=models.Index(condition=models.Q(('status__in', ['pending', 'retrying', 'replaying'])), fields=['group', 'key', 'id'], name='deadletter_unresolved_key_idx'),
        ),
        migrations.AddIndex(
            model_name='deadletter',
            index=models.Index(condition=models.Q(('status', 'retrying')), fields=['next_attempt_at'], name='deadletter_retry_due_idx'),
        ),
    ]
