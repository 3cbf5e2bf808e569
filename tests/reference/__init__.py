"""Independent re-implementations of other projects' models, used only as test oracles."""
