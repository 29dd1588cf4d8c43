"""Getting models onto the disk: instructions now, the download manager next."""
