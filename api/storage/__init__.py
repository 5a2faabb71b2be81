"""Storage: deleting ended jobs, the per-team storage figure and the optional storage quota."""
