"""The appliance operating system: TLS, systemd, network, xenstore, first boot."""
