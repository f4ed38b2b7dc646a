"""Marks of what the Kafka cluster acknowledged, so the relay notices a cluster that forgot it (and re-sends)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('outbox', '0005_operations_resend'),
    ]

    operations = [
        migrations.CreateModel(
            name='BrokerMark',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('topic', models.CharField(help_text='As on the cluster (KAFKA_TOPIC_PREFIX included).', max_length=200)),
                ('partition', models.IntegerField()),
                ('offset', models.BigIntegerField()),
                ('event_id', models.UUIDField()),
                ('cluster_id', models.CharField(blank=True, max_length=100)),
                ('marked_at', models.DateTimeField()),
            ],
            options={
                'ordering': ['topic', 'partition'],
                'constraints': [models.UniqueConstraint(fields=('topic', 'partition'), name='outbox_brokermark_topic_partition')],
            },
        ),
    ]
