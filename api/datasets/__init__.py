"""Uploaded datasets: /v1/datasets (router -> service -> schemas -> repository), and the
parsers that validate and normalise what a user sends (no torch).

Every parser takes the uploaded bytes and either returns a
:class:`~api.datasets.parsed.ParsedDataset` or raises
:class:`~api.datasets.errors.DatasetRejected` saying what is wrong; nothing is
stored until a parser has accepted the whole file. :mod:`api.datasets.codec`
turns an accepted dataset into the pickle-free ``.npz`` the SQL store keeps
(and back, for the worker).
"""
