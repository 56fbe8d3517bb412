"""Operations in the web UI and the JSON API: one list, one page, one stream for every kind.

``GET /api/v1/operations`` (``?kind=&status=&target=&limit=``),
``GET /api/v1/operations/{id}`` (``?log_after=``), its server-sent event
stream ``/events`` (event ``operation``: the detail, then new log lines only)
and ``POST .../cancel``. The page ``/operations/{id}`` renders any kind live
(``static/operation.js``); ``/backup/runs/{id}`` is the same page.
"""
