"""What several parts of the window use: background work, the words for errors, table models, preferences."""
