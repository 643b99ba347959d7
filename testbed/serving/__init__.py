"""Building blocks of the testbed service; ``testbed.service.create_app`` wires them into one app."""
