"""FlowSample now belongs to the ops app (its 0001 took it over): common forgets it in state only, so its table,
`common_flowsample`, and its rows stay."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("common", "0003_flowsample"),
        ("ops", "0001_flowsample"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="FlowSample")],
        ),
    ]
