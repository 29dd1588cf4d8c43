"""Download jobs, as the download code names them. The job table itself is a record like the
API keys, not download machinery: it lives in talktuah/jobs_table.py, so that store.py reads
it without importing this package (tests/test_import_direction.py holds that)."""

from ..jobs_table import DownloadJob, JobStatus, JobStore, LiveJobExists, PlannedFile, now_iso

__all__ = ["DownloadJob", "JobStatus", "JobStore", "LiveJobExists", "PlannedFile", "now_iso"]
