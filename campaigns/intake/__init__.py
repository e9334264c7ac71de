"""Intake: contacts and do-not-call numbers read from files, checked, and stored all or nothing.

One job a module:

- ``reading``: a CSV file decoded and split into records, its delimiter and columns found.
- ``rows``: records and their checked numbers made into contacts and row errors.
- ``call_at``: the reminder time of a row with a ``call_at`` cell.
- ``parsing``: the parse run off the event loop, in a thread or a pool of processes.
- ``store``: what storing contacts shares across databases (campaign check, rows, list insert).
- ``store_sqlite``: a file's contacts staged by multi-row inserts (SQLite).
- ``store_postgresql``: a file's contacts stored by COPY (PostgreSQL).
- ``staging``: SQLite's staged runs (staged in short transactions, then published).
- ``report``: the report of an intake (counts and the first row errors).
- ``errors``: what refuses a whole file.
- ``contacts``: a CSV of contacts into a campaign, or its dry run.
- ``dnc_file``: a CSV of numbers onto a do-not-call list.
"""
