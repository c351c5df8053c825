from gpi_desktop.cli import main

raise SystemExit(main())
