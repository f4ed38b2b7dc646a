"""Consumer lag read from the broker: a new table (safe beside the running release, which never reads it) and
FlowSample.lag's new help text (no database change)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ops', '0001_flowsample'),
    ]

    operations = [
        migrations.AlterField(
            model_name='flowsample',
            name='lag',
            field=models.JSONField(default=dict, help_text='Consumer group → total lag, read from the broker (PartitionLag).'),
        ),
        migrations.CreateModel(
            name='PartitionLag',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('group', models.CharField(help_text="The consumer group's id on the broker.", max_length=255)),
                ('topic', models.CharField(max_length=255)),
                ('partition', models.IntegerField()),
                ('committed', models.BigIntegerField(help_text="The group's committed offset (the log start if it has none).")),
                ('high', models.BigIntegerField(help_text="The partition's end offset (high watermark).")),
                ('sampled_at', models.DateTimeField()),
                ('stuck_since', models.DateTimeField(help_text='Since when the partition has had lag and this same committed offset (empty: no lag).', null=True)),
            ],
            options={
                'ordering': ['group', 'topic', 'partition'],
                'constraints': [models.UniqueConstraint(fields=('group', 'topic', 'partition'), name='ops_partitionlag_unique_partition')],
            },
        ),
    ]
