"""Values shared by every test module and fixture plugin."""

API_KEY = "tt-test-key-0123456789abcdefghijklmnop"

#: Server settings for tests that watch downloads: small chunks and frequent progress, so a
#: download of a few hundred KB shows several steps; a small disk margin, so a temp disk
#: need not have 512 MiB free; no progress bars from huggingface_hub in the logs.
FAST_DOWNLOADS = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TALKTUAH_DOWNLOAD_CHUNK_BYTES": "16384",
    "TALKTUAH_DOWNLOAD_PROGRESS_INTERVAL": "0.1",
    "TALKTUAH_DOWNLOAD_DISK_MARGIN_BYTES": str(1024 * 1024),
}
