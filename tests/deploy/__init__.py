"""The deployment files (Dockerfile, compose, nginx, systemd), checked and run."""
