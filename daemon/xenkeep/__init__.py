"""XenKeep: backup and self-service appliance for XenServer / XCP-ng pools."""

__version__ = "0.1.0"
