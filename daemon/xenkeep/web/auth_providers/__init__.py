"""Sign-in providers on the web: the sign-in routes (start, callback,
metadata), the administrators' pages and the JSON API."""
