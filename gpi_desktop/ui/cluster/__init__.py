"""The cluster dialogs: Prepare for a cluster and Merge cluster results."""
