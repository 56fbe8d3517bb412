"""HTTP: HTML views and the JSON API, thin handlers over the services."""
