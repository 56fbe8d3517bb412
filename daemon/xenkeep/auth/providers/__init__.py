"""Sign-in providers: LDAP / Active Directory, OpenID Connect (generic,
Google), GitHub, SAML 2.0.

``base`` is the contract every provider type meets; ``catalog`` lists the
types; ``store`` keeps their configuration (secrets encrypted); ``service``
runs sign-ins through them and administers them. Users they bring are made
by :mod:`xenkeep.auth.external`.
"""
