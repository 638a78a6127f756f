"""Admin routes: every router here requires role `admin` and is audited."""
