"""Pools in the web UI (:mod:`.views`), the first-boot wizard (:mod:`.step`)
and the JSON API (:mod:`.api`): the Pools page, the wizard's "Connect a pool" step, their JSON API
and the live event stream the dashboard listens to.

Registering a pool takes two steps everywhere: first the URL and the
credentials, after which only the certificate's fingerprint is read and
shown; then the admin confirms it, and only then is the password sent, over
a connection pinned to that fingerprint (trust on first use).
"""
