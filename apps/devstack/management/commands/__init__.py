"""`manage.py embedded_broker`: Tansu for `make run`."""
