"""Background replays record when their task started on them (replay_started_at), so the stale sweep tells a
dead worker from a task still waiting in the Celery queue. A nullable column: no rewrite, and a release that
does not know it keeps working during a rolling deploy."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('consumers', '0008_replay_actor_name'),
    ]

    operations = [
        migrations.AddField(
            model_name='deadletter',
            name='replay_started_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
