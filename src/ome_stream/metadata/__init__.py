"""Metadata documents (OME-NGFF, OME-XML) built from the layout."""
