"""A Celery worker's heartbeat: the kind `celery` among the choices, and the help text. No SQL (choices and help
texts live in Python only), so both releases run side by side during a rolling deploy."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('common', '0004_flowsample_moves_to_ops'),
    ]

    operations = [
        migrations.AlterField(
            model_name='heartbeat',
            name='group',
            field=models.CharField(blank=True, help_text='The consumer group; empty for the relay and Celery workers.', max_length=100),
        ),
        migrations.AlterField(
            model_name='heartbeat',
            name='kind',
            field=models.CharField(choices=[('relay', 'Outbox relay'), ('consumer', 'Consumer'), ('celery', 'Celery worker')], max_length=20),
        ),
    ]
