"""`thawkit serve`: an HTTP server (FastAPI) for finished runs of every task, with dynamic batching.

Schemas follow text-embeddings-inference (/predict, /embed, /similarity) and the OpenAI API
(/v1/embeddings, /v1/models), so existing clients work. See docs/serving.md.
"""

from thawkit.serve.app import ServeLimits, create_app
from thawkit.serve.models import ServedModel, load_served

__all__ = ["ServeLimits", "ServedModel", "create_app", "load_served"]
