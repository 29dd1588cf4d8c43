"""The `talktuah` command."""
