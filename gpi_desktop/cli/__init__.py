from gpi_desktop.cli.entry import main
