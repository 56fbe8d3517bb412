"""CloudInit for self-service VMs: the NoCloud ``cidata`` config drive."""
