"""A job's session: the one policy both front ends follow, from the journal to the export folder."""
