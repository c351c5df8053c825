"""What a run hands over: the gpi_pack export folder, its manifest (provenance), comparing two exports."""
