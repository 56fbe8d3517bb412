"""Every user's own account, in the web UI (:mod:`.views`) and the JSON API
(:mod:`.api`): their password, two-factor sign-in and recovery codes, their
sessions and API tokens. Users brought by a sign-in provider have no
password here: the pages say so instead of offering to change it.
"""
