"""Dead-letter history records who acted when it was no user of this site (the replay command: its OS user)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('consumers', '0007_deadletter_fix'),
    ]

    operations = [
        migrations.AddField(
            model_name='deadletterreplay',
            name='actor_name',
            field=models.CharField(blank=True, db_default='', help_text='Who, when it was not a user of this site: e.g. `manage.py replay_dead_letters (OS user alice)`.', max_length=150),
        ),
    ]
