"""Where results go besides the output folder: experiment trackers."""
