"""flowker.specs: the JSON Schemas for spec files and REST bodies (shipped as package data)."""
