"""Tests of the development stack: the broker launchers and `manage.py embedded_broker`."""
