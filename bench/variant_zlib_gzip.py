"""A ``bench/etl_pipeline.py --variant``: the extract's parts through zlib level 1 (the former writer), not ISA-L.

``--variant bench/variant_zlib_gzip.py`` runs each stage as it is (A: ISA-L) and with this file (B: zlib),
side by side, so that B/A of the extract is what ISA-L saves there.
"""

from entity_etl.runtime import gzip_parts

gzip_parts.backend = lambda: "zlib"
