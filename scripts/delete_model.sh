#!/bin/sh
# Kept for users of the seed: the CLI does the work (talktuah rm --help).
exec talktuah rm "$@"
