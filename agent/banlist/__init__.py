"""Ban-list documents: parsing, signatures, fetching."""
