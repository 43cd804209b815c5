"""App-ready bundles: the manifest (written and read in ``manifest.py``, its JSON Schema beside
it), the ``.zip`` archive and its safe extraction (``archive.py``), the label set
(``labels.py``) and the Swift/Kotlin snippets generated from the manifest (``snippets/``).

    load_manifest(dir) / write_manifest(dir, manifest)   schema + sha256 of every file
    open_bundle(path)                                    a folder, or a .zip extracted and checked
    artifact_entry(...) / artifact_from_entry(dir, a)    one artifact's manifest entry, both ways
"""
from __future__ import annotations

from .archive import extract_bundle, open_bundle, write_zip, zip_path
from .manifest import (MANIFEST_SCHEMA, artifact_entry, artifact_from_entry, file_hashes, load_manifest,
                       manifest_schema, remove_stale, validate_manifest, write_manifest)

__all__ = ["MANIFEST_SCHEMA", "manifest_schema", "file_hashes", "write_manifest", "load_manifest",
           "validate_manifest", "artifact_entry", "artifact_from_entry", "remove_stale", "open_bundle",
           "extract_bundle", "write_zip", "zip_path"]
