#!/bin/sh
# Kept for users of the seed: the CLI does the work (talktuah pull --help).
exec talktuah pull "$@"
