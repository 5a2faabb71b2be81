"""The jobs domain (issue 22 starts it here: its status values; the rest of the domain is
still in api/db/jobs.py, api/jobs_service.py, api/routers/jobs.py, api/joblist/)."""
