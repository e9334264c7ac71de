"""Intake: contacts and do-not-call numbers read from files, checked, and stored all or nothing.

One job a module:

- ``reading``: a CSV file decoded and split into records, its delimiter and columns found.
- ``rows``: records and their checked numbers made into contacts and row errors.
- ``call_at``: the reminder time of a row with a ``call_at`` cell.
- ``parsing``: the parse run off the event loop, in a thread or a pool of processes.
- ``store``: contacts stored in a campaign, as each database does it fastest.
- ``staging``: SQLite's staged runs (staged in short transactions, then published).
- ``report``: the report of an intake (counts and the first row errors).
- ``errors``: what refuses a whole file.
- ``contacts``: a CSV of contacts into a campaign, or its dry run.
- ``dnc_file``: a CSV of numbers onto a do-not-call list.
"""
