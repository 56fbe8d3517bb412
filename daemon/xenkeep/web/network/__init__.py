"""The network and NTP settings: the admin page (``views``) and the JSON API (``api``)."""
