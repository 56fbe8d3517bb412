"""Self-service pages and API: SSH keys, resource sets, members' VMs."""
