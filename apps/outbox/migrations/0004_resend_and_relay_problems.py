"""Failed rows can be re-sent (who and when are recorded); refusals a person must fix are kept for the admin
and `/readyz`.

Both new outbox columns are added without a table rewrite (a constant database default), and no index
covers them, so the relay's marks stay HOT updates.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('outbox', '0003_pending_topic'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='outboxevent',
            options={'ordering': ['id'], 'permissions': [('resend_outboxevent', 'Can re-send failed outbox events')]},
        ),
        migrations.AddField(
            model_name='outboxevent',
            name='resent_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='outboxevent',
            name='resent_by',
            field=models.CharField(blank=True, db_default='', max_length=150),
        ),
        migrations.CreateModel(
            name='RelayProblem',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('code', models.CharField(max_length=64)),
                ('topic', models.CharField(max_length=200)),
                ('message', models.TextField()),
                ('rows', models.PositiveIntegerField(help_text='Rows refused with this error, since it was first seen.')),
                ('first_seen_at', models.DateTimeField()),
                ('last_seen_at', models.DateTimeField()),
            ],
            options={
                'ordering': ['topic', 'code'],
                'constraints': [models.UniqueConstraint(fields=('code', 'topic'), name='outbox_relayproblem_code_topic')],
            },
        ),
    ]
