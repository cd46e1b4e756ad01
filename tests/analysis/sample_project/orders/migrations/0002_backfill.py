from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sales", "0001_initial")]
    operations = [
        migrations.RunSQL(
            "UPDATE sales_order SET number = 'N' || id WHERE number = ''",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
