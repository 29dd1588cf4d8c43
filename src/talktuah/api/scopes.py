"""Who may call what: every protected route and the scope it needs, in one table.

A route missing here is refused (403) for every key, admin included, and the scope-matrix
test fails: a new route cannot ship without deciding who may call it.
"""

from __future__ import annotations

from ..keys import Scope

ROUTE_SCOPES: dict[tuple[str, str], Scope] = {
    # inference
    ("POST", "/v1/chat/completions"): Scope.INFER,
    ("POST", "/v1/completions"): Scope.INFER,
    ("POST", "/v1/embeddings"): Scope.INFER,
    ("GET", "/v1/models"): Scope.INFER,
    ("POST", "/api/chat"): Scope.INFER,
    ("GET", "/api/models"): Scope.INFER,
    ("POST", "/v1/messages"): Scope.INFER,
    ("POST", "/v1/messages/count_tokens"): Scope.INFER,
    ("POST", "/v1/responses"): Scope.INFER,
    # reading the model lifecycle
    ("GET", "/api/model-status"): Scope.MODELS_READ,
    ("GET", "/api/models/local"): Scope.MODELS_READ,
    ("GET", "/api/model-loading-status"): Scope.MODELS_READ,
    ("GET", "/api/download-progress"): Scope.MODELS_READ,
    ("GET", "/api/downloads"): Scope.MODELS_READ,
    ("GET", "/api/downloads/{job_id}"): Scope.MODELS_READ,
    ("GET", "/api/downloads/{job_id}/events"): Scope.MODELS_READ,
    ("GET", "/api/hub/quants"): Scope.MODELS_READ,
    ("GET", "/api/ps"): Scope.MODELS_READ,
    ("GET", "/api/storage"): Scope.MODELS_READ,
    # changing it
    ("POST", "/api/download-model"): Scope.MODELS_WRITE,
    ("DELETE", "/api/downloads/{job_id}"): Scope.MODELS_WRITE,
    ("DELETE", "/api/delete-model"): Scope.MODELS_WRITE,
    ("POST", "/api/switch-model"): Scope.MODELS_WRITE,
    ("POST", "/api/engine/dismiss-failure"): Scope.MODELS_WRITE,
    ("POST", "/api/load-model"): Scope.MODELS_WRITE,
    ("POST", "/api/unload-model"): Scope.MODELS_WRITE,
    ("POST", "/api/storage/gc"): Scope.MODELS_WRITE,
    # keys
    ("POST", "/api/keys"): Scope.ADMIN,
    ("GET", "/api/keys"): Scope.ADMIN,
    ("DELETE", "/api/keys/{key_id}"): Scope.ADMIN,
    ("POST", "/api/keys/rotate-admin"): Scope.ADMIN,
}
