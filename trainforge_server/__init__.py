"""The server distribution's own code (``pip install trainforge-server``, which
``pip install 'trainforge[server]'`` brings): the work of the operator verbs (up, api,
worker, db upgrade, admin). Their options live with the client's one CLI
(trainforge/operator_cmd.py), which imports this package when such a verb runs; the
server itself is the packages api/, worker/, ml/ and migrations/ (docs/packaging.md)."""
