"""The write fence's table (contract 6): the triggers are installed by
``strangler cutover --undo`` (the service is fenced while the monolith owns the data).

The same DDL as ``extracted/sync/fence.py`` writes (kept inline: a migration must not change
when that module does).
"""

from django.db import migrations

CREATE = ("CREATE TABLE IF NOT EXISTS strangler_fence (table_name varchar(64) PRIMARY KEY, "
          "context varchar(64) NOT NULL, open integer NOT NULL DEFAULT 0, "
          "fenced_at varchar(40))")


class Migration(migrations.Migration):

    dependencies = [("ordering", "0001_initial")]

    operations = [migrations.RunSQL(CREATE, "DROP TABLE IF EXISTS strangler_fence")]
