"""Template tag libraries of operations: `work_queue`, the admin index's "needs you" panel."""
