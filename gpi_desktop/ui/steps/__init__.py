"""The six steps of the window, one module each (`*_step`), with the helpers only one step uses."""
