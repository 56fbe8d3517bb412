"""Backup jobs: schedules, the full-or-delta decision, runs, restores, reports.

Pure parts (:mod:`.schedule`, :mod:`.job`, :mod:`.decide`, :mod:`.report`)
are tested on synthetic data; :mod:`.runner` and :mod:`.restore` do the I/O
against a pool and the datastore; :mod:`.manager` is the service.
"""
