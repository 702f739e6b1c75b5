"""``mmalign serve``: an HTTP query service (search, recommend, items, media, metrics) and a search page.

The service loads the bundle and the query encoders once, groups the encodes of concurrent requests
into micro-batches (:mod:`.batcher`), follows the collection's alias when a re-embed moves it to
another bundle (:mod:`.service`), and serves the page at ``/`` (:mod:`.page`). The HTTP layer
(:mod:`.app`) needs the ``serve`` extra (FastAPI, uvicorn, python-multipart); importing this
package does not import it.
"""

from mmalign.plugin.serve.config import ServeConfig

__all__ = ["ServeConfig"]
