"""Background replays remember when they were queued (replay_queued_at), so a lost task is re-queued; outcome `refused`."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('consumers', '0005_retrying'),
    ]

    operations = [
        migrations.AddField(
            model_name='deadletter',
            name='replay_queued_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='deadletterreplay',
            name='outcome',
            field=models.CharField(choices=[('applied', 'Applied'), ('duplicate', 'Already applied (inbox)'), ('failed', 'Failed'), ('queued', 'Queued'), ('refused', 'Refused (replay cap)'), ('discarded', 'Discarded')], max_length=20),
        ),
    ]
