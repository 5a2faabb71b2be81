"""The jobs domain (issue 22 starts it here: its status values; the rest of the domain is
still in api/ledger/repository.py, api/jobs/service.py, api/jobs/router.py, api/joblist/)."""
