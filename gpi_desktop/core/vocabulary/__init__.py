"""The words every part of core speaks: errors, progress and stopping, a prompt's result, the run and export settings and their checks (options, the template date)."""
