"""Self-service VMs: SSH keys, resource sets with quotas, creation with CloudInit."""
