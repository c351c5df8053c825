"""The job: what to run (JobSpec, job_key/job_hash), running it with its journal, unfinished jobs."""
